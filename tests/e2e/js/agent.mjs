// A pusher-js driver for the end-to-end tests: JSON commands on stdin, JSON observations on stdout.
// Each command names a client; the agent holds any number of real pusher-js clients.
import readline from 'node:readline';
import Pusher from 'pusher-js';

const clients = new Map();

function emit(observation) {
  process.stdout.write(JSON.stringify(observation) + '\n');
}

function connect(cmd) {
  const headers = cmd.token ? { Authorization: `Bearer ${cmd.token}` } : {};
  const pusher = new Pusher(cmd.key, {
    cluster: 'local',
    wsHost: cmd.host,
    wsPort: cmd.wsPort ?? cmd.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    // authQuery: `?provider=local`, naming the provider that signs (RELAY_SECONDARY_PROVIDER).
    channelAuthorization: { endpoint: `${cmd.base}/auth/channel${cmd.authQuery ?? ''}`, transport: 'ajax', headers },
    userAuthentication: { endpoint: `${cmd.base}/auth/user${cmd.authQuery ?? ''}`, transport: 'ajax', headers },
  });
  clients.set(cmd.client, pusher);
  pusher.connection.bind('state_change', (states) =>
    emit({ client: cmd.client, type: 'state', state: states.current, socket_id: pusher.connection.socket_id }));
  pusher.connection.bind('error', (err) =>
    emit({ client: cmd.client, type: 'connection_error', error: JSON.stringify(err?.data ?? err?.type ?? null) }));
  pusher.bind_global((event, data) => {
    // Channel events are reported by the channel binding below; this catches connection-level ones.
    if (event.startsWith('pusher:signin_success')) emit({ client: cmd.client, type: 'signed_in' });
  });
}

function subscribe(cmd) {
  const pusher = clients.get(cmd.client);
  const channel = pusher.subscribe(cmd.channel);
  // Bound in the same turn as the subscribe, so that nothing the answer brings can come first.
  for (const event of cmd.bind ?? []) {
    channel.bind(event, (data) =>
      emit({ client: cmd.client, type: 'bound', channel: cmd.channel, event, data, user_id: null }));
  }
  channel.bind('pusher:subscription_succeeded', (members) => {
    const obs = { client: cmd.client, type: 'subscribed', channel: cmd.channel };
    if (members && typeof members.each === 'function') {
      const ids = [];
      members.each((m) => ids.push(m.id));
      obs.members = ids.sort();
      obs.me = members.me ? { id: members.me.id, info: members.me.info } : null;
    }
    emit(obs);
  });
  channel.bind('pusher:subscription_error', (err) =>
    emit({ client: cmd.client, type: 'subscription_error', channel: cmd.channel, status: err?.status ?? null, error: String(err?.error ?? err?.type ?? '') }));
  channel.bind('pusher:member_added', (m) =>
    emit({ client: cmd.client, type: 'member_added', channel: cmd.channel, id: m.id, info: m.info }));
  channel.bind('pusher:member_removed', (m) =>
    emit({ client: cmd.client, type: 'member_removed', channel: cmd.channel, id: m.id }));
  channel.bind_global((event, data) => {
    if (event.startsWith('pusher:') || event.startsWith('pusher_internal:')) return;
    emit({ client: cmd.client, type: 'event', channel: cmd.channel, event, data });
  });
}

const handlers = {
  connect,
  subscribe,
  // Global bindings get no metadata; a named binding does (user_id of a presence client event).
  bind: (cmd) => clients.get(cmd.client).channel(cmd.channel).bind(cmd.event, (data, metadata) =>
    emit({ client: cmd.client, type: 'bound', channel: cmd.channel, event: cmd.event, data, user_id: metadata?.user_id ?? null })),
  unsubscribe: (cmd) => clients.get(cmd.client).unsubscribe(cmd.channel),
  trigger: (cmd) => {
    const ok = clients.get(cmd.client).channel(cmd.channel).trigger(cmd.event, cmd.data);
    emit({ client: cmd.client, type: 'triggered', ok });
  },
  signin: (cmd) => clients.get(cmd.client).signin(),
  // pusher-js's watchlist: online/offline of the user ids the sign-in's user_data watches.
  watch: (cmd) => {
    for (const name of ['online', 'offline']) {
      clients.get(cmd.client).user.watchlist.bind(name, (e) =>
        emit({ client: cmd.client, type: 'watchlist', name: e.name, user_ids: e.user_ids }));
    }
  },
  disconnect: (cmd) => {
    clients.get(cmd.client).disconnect();
    clients.delete(cmd.client);
  },
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
