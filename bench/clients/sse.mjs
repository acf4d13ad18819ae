// Many server-sent-events subscribers in one Node process, for the SSE fan-out and memory
// benchmarks: what subscribers.mjs is for WebSockets, with the same commands and answers.
//
//   node sse.mjs '{"url": "http://127.0.0.1:PORT/v1/stream", "connections": 500,
//                  "channel": "bench", "ownChannels": false, "offset": 0, "concurrency": 50}'
//
// Each stream behaves as a browser's EventSource does: one keep-alive HTTP/1.1 GET per stream
// (`Accept: text/event-stream`, `Cache-Control: no-cache`), held open, its chunks read as they
// arrive and split into events at blank lines. It is ready once its `connected` event arrived
// (the relay subscribed it by then). Once every stream is, the process prints
// {"type": "ready", "connections", "ms", "extensions": {"": n}} (no extension on SSE; the key keeps
// subscribers.mjs's answer), then takes the JSON commands of received.mjs on stdin.
// An event's data is the publisher's clock (ms, see publisher.mjs); its latency is taken on receipt.
// Heartbeat comments and other blocks are read and dropped, as EventSource drops them.
import http from 'node:http';
import { Received, emit, openEach, serve } from './received.mjs';

const options = JSON.parse(process.argv[2]);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const streams = [];
const received = new Received();
let ready = false;

// An event block is `id: ...\ndata: {"type":"event","channel":...,"event":"tick","data":"<ms>"}`;
// the clock is read without parsing the JSON, as subscribers.mjs reads it.
function onBlock(block) {
  const at = block.indexOf('"data":"');
  if (at >= 0 && block.indexOf('"tick"') >= 0) received.record(Number.parseFloat(block.slice(at + 8, at + 40)));
}

function open(index) {
  const channel = options.ownChannels ? `${options.channel}-${options.offset + index}` : options.channel;
  const url = `${options.url}?channel=${encodeURIComponent(channel)}`;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stream ${index}: not connected within 30 s`)), 30_000);
    let connected = false;
    let buffer = '';
    const request = http.get(
      url,
      { agent, headers: { accept: 'text/event-stream', 'cache-control': 'no-cache' } },
      (response) => {
        if (response.statusCode !== 200) {
          clearTimeout(timer);
          reject(new Error(`stream ${index}: status ${response.statusCode}`));
          response.resume();
          return;
        }
        response.setEncoding('utf8');
        response.on('data', (text) => {
          buffer += text;
          let end = buffer.indexOf('\n\n');
          while (end >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (!connected) {
              if (block.includes('"connected"')) {
                connected = true;
                clearTimeout(timer);
                resolve();
              }
            } else {
              onBlock(block);
            }
            end = buffer.indexOf('\n\n');
          }
        });
        response.on('end', () => {
          if (ready) received.closed += 1;
        });
      },
    );
    request.on('error', (error) => {
      clearTimeout(timer);
      if (ready) received.closed += 1;
      reject(error);
    });
    streams.push(request);
  });
}

async function openAll() {
  const ms = await openEach(options, open);
  ready = true;
  emit({ type: 'ready', connections: streams.length, ms, extensions: { '': streams.length } });
}

function closeAll() {
  for (const request of streams) request.destroy();
  agent.destroy();
  setTimeout(() => process.exit(0), 100);
}

serve(received, closeAll, openAll());
