// pusher-js against API Gateway WebSockets (serverless-offline here): the agent.mjs protocol of
// JSON commands and observations, with the user's token in the WebSocket URL, as browsers must
// send it. pusher-js appends `/app/{key}?protocol=7...` to wsPath, so a wsPath of
// `/{stage}?token={jwt}&path=` keeps the stage as the path and carries both in the query: the
// wsPath comes from infra/offline.py (OfflineStack.ws_path), which `make offline` prints too.
import readline from 'node:readline';
import Pusher from 'pusher-js';

const clients = new Map();
const say = (observation) => process.stdout.write(`${JSON.stringify(observation)}\n`);

function connect({ client, key, host, wsPort, wsPath, base, token }) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const pusher = new Pusher(key, {
    cluster: 'apigateway',
    wsHost: host,
    wsPort,
    wsPath,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: { endpoint: `${base}/auth/channel`, transport: 'ajax', headers },
  });
  clients.set(client, pusher);
  pusher.connection.bind('state_change', ({ current }) =>
    say({ client, type: 'state', state: current, socket_id: pusher.connection.socket_id }));
}

function subscribe({ client, channel: name }) {
  const channel = clients.get(client).subscribe(name);
  channel.bind('pusher:subscription_succeeded', (members) => {
    const seen = { client, type: 'subscribed', channel: name };
    if (members && typeof members.each === 'function') {
      const ids = [];
      members.each((member) => ids.push(member.id));
      seen.members = ids.sort();
    }
    say(seen);
  });
  channel.bind('pusher:subscription_error', (error) =>
    say({ client, type: 'subscription_error', channel: name, status: error?.status ?? null }));
  channel.bind('pusher:member_added', (member) =>
    say({ client, type: 'member_added', channel: name, id: member.id, info: member.info }));
  channel.bind('pusher:member_removed', (member) =>
    say({ client, type: 'member_removed', channel: name, id: member.id }));
  channel.bind_global((event, data) => {
    if (!event.startsWith('pusher')) say({ client, type: 'event', channel: name, event, data });
  });
}

const commands = {
  connect,
  subscribe,
  trigger: ({ client, channel, event, data }) =>
    say({ client, type: 'triggered', ok: clients.get(client).channel(channel).trigger(event, data) }),
  disconnect: ({ client }) => {
    clients.get(client).disconnect();
    clients.delete(client);
  },
  // The socket dies without a close handshake: API Gateway (and serverless-offline) learn late.
  vanish: ({ client }) => {
    const socket = clients.get(client).connection.connection?.transport?.socket;
    socket?._socket?.destroy?.();
    say({ client, type: 'vanished', found: Boolean(socket?._socket) });
  },
};

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let command;
  try {
    command = JSON.parse(line);
    commands[command.op](command);
    say({ client: command.client ?? null, type: 'ack', op: command.op });
  } catch (error) {
    say({ client: command?.client ?? null, type: 'agent_error', error: String(error) });
  }
});
process.stdin.on('end', () => process.exit(0));
say({ type: 'ready' });
