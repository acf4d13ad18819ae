// examples/recovery.js on real pusher-js clients, for the end-to-end tests: JSON commands on stdin,
// JSON observations on stdout, with agent.mjs's protocol (PusherAgent drives it).
//
// ops: connect (as agent.mjs), subscribe {channel, historyUrl, bind: [event]} wraps the channel in
// recoverable() and reports {type: "applied", event, data, id} for what the helper hands the app,
// {type: "raw", event, data} for what pusher-js delivered, {type: "subscribed"} at every
// subscription and {type: "gap", problem} from onGap; drop / reconnect disconnect and connect the
// client's socket; hold makes the helper's next history fetch wait (reported as {type: "fetching",
// url}) until release.
import readline from 'node:readline';
import Pusher from 'pusher-js';
import { recoverable } from '../../../examples/recovery.js';

const clients = new Map();
let held = null; // {wanted: bool, release: fn} while the next fetch is to wait

function emit(observation) {
  process.stdout.write(JSON.stringify(observation) + '\n');
}

function heldFetch(client) {
  return async (url, init) => {
    if (held) {
      emit({ client, type: 'fetching', url });
      await new Promise((resolve) => { held.release = resolve; });
      held = null;
    }
    return fetch(url, init);
  };
}

function connect(cmd) {
  const pusher = new Pusher(cmd.key, {
    cluster: 'local',
    wsHost: cmd.host,
    wsPort: cmd.wsPort ?? cmd.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
  });
  clients.set(cmd.client, pusher);
  pusher.connection.bind('state_change', (states) =>
    emit({ client: cmd.client, type: 'state', state: states.current, socket_id: pusher.connection.socket_id }));
}

function subscribe(cmd) {
  const channel = clients.get(cmd.client).subscribe(cmd.channel);
  const report = (type) => (data, meta) =>
    emit({ client: cmd.client, type, channel: cmd.channel, data, id: meta?.id ?? null });
  channel.bind_global((event, data) => {
    if (!event.startsWith('pusher')) emit({ client: cmd.client, type: 'raw', channel: cmd.channel, event, data });
  });
  const recovering = recoverable(channel, {
    historyUrl: cmd.historyUrl,
    onGap: (problem) => emit({ client: cmd.client, type: 'gap', channel: cmd.channel, problem }),
    fetchImpl: heldFetch(cmd.client),
  });
  for (const event of cmd.bind ?? []) {
    recovering.bind(event, (data, meta) =>
      emit({ client: cmd.client, type: 'applied', channel: cmd.channel, event, data, id: meta?.id ?? null }));
  }
  recovering.bind('pusher:subscription_succeeded', report('subscribed'));
}

const handlers = {
  connect,
  subscribe,
  drop: (cmd) => clients.get(cmd.client).disconnect(),
  reconnect: (cmd) => clients.get(cmd.client).connect(),
  hold: () => { held = { release: null }; },
  release: () => held?.release?.(),
  exit: () => process.exit(0),
};

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
    handlers[cmd.op](cmd);
    emit({ client: cmd.client ?? null, type: 'ack', op: cmd.op });
  } catch (err) {
    emit({ client: cmd?.client ?? null, type: 'agent_error', error: String(err) });
  }
});
process.stdin.on('end', () => process.exit(0));
emit({ type: 'ready' });
