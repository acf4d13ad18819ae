// The official Node server SDK (`pusher` 5.3) making one call, for the Pusher HTTP API tests.
//
// argv[2] is JSON: {config: {appId, key, secret, host, port}, op, args}, where op is one of the
// SDK's own methods (trigger, triggerBatch, get, sendToUser, terminateUserConnections) and args
// its arguments. Prints one JSON line: {status, body} (body parsed when it is JSON), or
// {status, error} when the SDK raised (status null: nothing was answered).
import Pusher from 'pusher';

const { config, op, args } = JSON.parse(process.argv[2]);
const pusher = new Pusher({ ...config, useTLS: false });

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

try {
  const response = await pusher[op](...args);
  const text = await response.text();
  process.stdout.write(JSON.stringify({ status: response.status, body: parse(text) }) + '\n');
} catch (err) {
  process.stdout.write(JSON.stringify({ status: err.status ?? null, error: String(err.message ?? err), body: parse(err.body ?? '') }) + '\n');
}
