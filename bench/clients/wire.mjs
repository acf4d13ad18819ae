// A minimal WebSocket client over node:net, for load clients that must stay light: no per-message
// events, no UTF-8 validation, payloads handed over as Buffer slices. Text and binary frames from
// the server (unmasked, RFC 6455) are parsed across TCP chunks; pings are answered; what it sends
// is masked, as a client must. Enough for the benchmarks, not a general-purpose client.
import crypto from 'node:crypto';
import net from 'node:net';

const OP_TEXT = 1;
const OP_CLOSE = 8;
const OP_PING = 9;
const OP_PONG = 10;

function encode(opcode, payload) {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  let header;
  if (body.length < 126) {
    header = Buffer.alloc(6);
    header[1] = 0x80 | body.length;
  } else if (body.length < 65536) {
    header = Buffer.alloc(8);
    header[1] = 0x80 | 126;
    header.writeUInt16BE(body.length, 2);
  } else {
    header = Buffer.alloc(14);
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(body.length), 2);
  }
  header[0] = 0x80 | opcode;
  const mask = crypto.randomBytes(4);
  mask.copy(header, header.length - 4);
  const masked = Buffer.allocUnsafe(body.length);
  for (let i = 0; i < body.length; i += 1) masked[i] = body[i] ^ mask[i & 3];
  return Buffer.concat([header, masked]);
}

// Connect to ws://host:port/path; `onMessage(buffer)` gets each text or binary payload.
// Returns { send(text), close() }; `onOpen` fires after the handshake, `onClose(error?)` once.
export function connect(url, { onOpen, onMessage, onClose }) {
  const target = new URL(url);
  const socket = net.connect(Number(target.port), target.hostname);
  socket.setNoDelay(true);
  let open = false;
  let closed = false;
  let pending = null; // bytes not yet parsed

  const finish = (error) => {
    if (closed) return;
    closed = true;
    onClose?.(error);
  };

  socket.on('connect', () => {
    const key = crypto.randomBytes(16).toString('base64');
    socket.write(
      `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\n` +
        `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\n` +
        'Sec-WebSocket-Version: 13\r\n\r\n',
    );
  });

  socket.on('data', (chunk) => {
    let buf = pending === null ? chunk : Buffer.concat([pending, chunk]);
    pending = null;
    if (!open) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        pending = buf;
        return;
      }
      const head = buf.toString('latin1', 0, end);
      if (!/^HTTP\/1\.1 101/.test(head)) {
        socket.destroy();
        finish(new Error(`handshake refused: ${head.split('\r\n')[0]}`));
        return;
      }
      open = true;
      buf = buf.subarray(end + 4);
      onOpen?.();
    }
    let at = 0;
    while (buf.length - at >= 2) {
      const opcode = buf[at] & 0x0f;
      let length = buf[at + 1] & 0x7f;
      let start = at + 2;
      if (length === 126) {
        if (buf.length - at < 4) break;
        length = buf.readUInt16BE(at + 2);
        start = at + 4;
      } else if (length === 127) {
        if (buf.length - at < 10) break;
        length = Number(buf.readBigUInt64BE(at + 2));
        start = at + 10;
      }
      if (buf.length < start + length) break;
      const payload = buf.subarray(start, start + length);
      at = start + length;
      if (opcode === OP_PING) socket.write(encode(OP_PONG, payload));
      else if (opcode === OP_CLOSE) {
        socket.end();
        finish();
        return;
      } else if (opcode !== OP_PONG) onMessage(payload);
    }
    if (at < buf.length) pending = buf.subarray(at);
  });

  socket.on('error', (error) => finish(error));
  socket.on('close', () => finish());

  return {
    send: (text) => socket.write(encode(OP_TEXT, text)),
    close: () => {
      if (!closed && open) socket.write(encode(OP_CLOSE, Buffer.from([0x03, 0xe8])));
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    },
    get closed() {
      return closed;
    },
  };
}
