// Many Pusher-protocol WebSocket subscribers in one Node process, for the fan-out and memory
// benchmarks. The same client runs against the relay's local provider and against soketi.
//
//   node subscribers.mjs '{"url": "ws://127.0.0.1:PORT/app/KEY?protocol=7", "connections": 500,
//                          "channel": "bench", "ownChannels": false, "offset": 0, "concurrency": 50,
//                          "transport": "ws", "deflate": true}'
//
// transport "ws" (the default) is the `ws` package, which offers permessage-deflate as every
// browser does (`deflate: false` to stop offering it); "wire" is the light client of wire.mjs,
// which offers no extension and costs less CPU per frame, kept as a cross-check of the load
// client's weight. Each socket records the server's answer to the offer (its
// Sec-WebSocket-Extensions header, "" when it negotiated none); "ready" counts the answers.
// Each socket subscribes to `channel` (or, with ownChannels, to `channel-<offset + i>`). Once every
// one is subscribed the process prints {"type": "ready", "extensions": {answer: sockets}}; then it
// takes the JSON commands of received.mjs on stdin (report, reset, close).
// An event's data is the publisher's clock (ms, see publisher.mjs); its latency is taken on receipt.
// The receive path is kept cheap (no JSON parsing of event frames) so the client stays light.
import { Received, emit, openEach, serve } from './received.mjs';
import { connect } from './wire.mjs';

const options = JSON.parse(process.argv[2]);
// `ws` arrives with soketi's and pusher-js's dependencies; load it only when asked for.
const transport = options.transport ?? 'ws';
const WebSocket = transport === 'ws' ? (await import('ws')).default : null;
const answers = new Map(); // Sec-WebSocket-Extensions answer -> sockets
const sockets = [];
const received = new Received();
let ready = false;

// Event frames are {"event": "tick", "channel": ..., "data": "<ms>"} (key order differs by
// server); the clock is read without parsing the frame, from a string (what ws 7 hands over for
// a text frame) or from the raw bytes (wire.mjs).
function onEvent(text) {
  const at = text.indexOf('"data":"');
  return at >= 0 && received.record(Number.parseFloat(text.slice(at + 8, at + 40)));
}

function onEventBytes(payload) {
  const at = payload.indexOf('"data":"');
  return at >= 0 && received.record(Number.parseFloat(payload.toString('latin1', at + 8, at + 40)));
}

// The Pusher handshake both transports go through: subscribe once connected, resolve once in.
function handshake(index, channel, send, resolve, reject) {
  return (text) => {
    if (text.includes('pusher:connection_established')) {
      send(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
    } else if (text.includes('subscription_succeeded')) {
      resolve();
      return true;
    } else if (text.includes('pusher:error')) {
      reject(new Error(`socket ${index}: ${text}`));
    }
    return false;
  };
}

function open(index) {
  const channel = options.ownChannels ? `${options.channel}-${options.offset + index}` : options.channel;
  return new Promise((resolveOpen, rejectOpen) => {
    const timer = setTimeout(() => rejectOpen(new Error(`socket ${index}: not subscribed within 30 s`)), 30_000);
    const resolve = () => {
      clearTimeout(timer);
      resolveOpen();
    };
    const reject = (error) => {
      clearTimeout(timer);
      rejectOpen(error);
    };
    let subscribed = false;
    if (transport === 'ws') {
      // perMessageDeflate: true offers what a browser offers (client_max_window_bits).
      const ws = new WebSocket(options.url, { perMessageDeflate: options.deflate ?? true });
      ws.on('upgrade', (response) => {
        const answer = response.headers['sec-websocket-extensions'] ?? '';
        answers.set(answer, (answers.get(answer) ?? 0) + 1);
      });
      const pusher = handshake(index, channel, (text) => ws.send(text), resolve, reject);
      ws.on('message', (raw) => {
        // ws 7 (what soketi brings) hands a text frame over as a string, inflated when deflate
        // was negotiated.
        const text = typeof raw === 'string' ? raw : raw.toString();
        if (subscribed && text.includes('"tick"') && onEvent(text)) return;
        if (text.includes('pusher:ping')) ws.send('{"event":"pusher:pong","data":{}}');
        else if (!subscribed) subscribed = pusher(text);
      });
      ws.on('error', reject);
      ws.on('close', () => {
        if (ready) received.closed += 1;
        reject(new Error(`socket ${index}: closed before subscribing`));
      });
      sockets.push({ close: () => ws.close(), onceClosed: (fn) => ws.once('close', fn) });
      return;
    }
    let onClosed = null;
    answers.set('', (answers.get('') ?? 0) + 1); // wire.mjs offers no extension
    const client = connect(options.url, {
      onMessage: (payload) => {
        if (subscribed && payload.indexOf('"tick"') >= 0 && onEventBytes(payload)) return;
        const text = payload.toString();
        if (text.includes('pusher:ping')) client.send('{"event":"pusher:pong","data":{}}');
        else if (!subscribed) subscribed = pusher(text);
      },
      onClose: (error) => {
        if (ready) received.closed += 1;
        reject(error ?? new Error(`socket ${index}: closed before subscribing`));
        onClosed?.();
      },
    });
    const pusher = handshake(index, channel, (text) => client.send(text), resolve, reject);
    sockets.push({
      close: () => client.close(),
      onceClosed: (fn) => {
        if (client.closed) fn();
        else onClosed = fn;
      },
    });
  });
}

async function openAll() {
  const ms = await openEach(options, open);
  ready = true;
  emit({ type: 'ready', connections: sockets.length, ms, extensions: Object.fromEntries(answers) });
}

function closeAll() {
  let pending = sockets.length;
  const done = () => process.exit(0);
  if (pending === 0) done();
  for (const socket of sockets) {
    socket.onceClosed(() => {
      pending -= 1;
      if (pending === 0) done();
    });
    socket.close();
  }
  setTimeout(done, 3000).unref(); // a server that never answers the close does not keep us
}

serve(received, closeAll, openAll());
