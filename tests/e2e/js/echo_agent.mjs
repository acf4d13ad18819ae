// A Laravel Echo driver for the end-to-end tests: JSON commands on stdin, JSON observations on stdout.
// Each command names a client; every client is a real Echo (broadcaster "pusher") over a real
// pusher-js, configured as a Laravel app configures it (authEndpoint, bearerToken), or with a custom
// authorizer whose answers the test signs as Laravel's own /broadcasting/auth signs them.
import readline from 'node:readline';
import Echo from 'laravel-echo';
import Pusher from 'pusher-js'; // the Node build: encrypted channels included

const clients = new Map();
const pendingAuth = new Map(); // `${client} ${channel}` -> pusher-js authorizer callback

function emit(observation) {
  process.stdout.write(JSON.stringify(observation) + '\n');
}

// The test answers this request with an `auth_answer` command (the JSON Laravel would return).
function laravelAuthorizer(client) {
  return (channel) => ({
    authorize: (socketId, callback) => {
      pendingAuth.set(`${client} ${channel.name}`, callback);
      emit({ client, type: 'auth_request', channel: channel.name, socket_id: socketId });
    },
  });
}

function connect(cmd) {
  const options = {
    broadcaster: 'pusher',
    key: cmd.key,
    cluster: 'mt1',
    wsHost: cmd.host,
    wsPort: cmd.port,
    wssPort: cmd.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    Pusher,
    // Echo writes the bearer token into its default options' shared headers object: each client
    // here gets its own (a browser page holds one Echo, this process several).
    auth: { headers: {} },
    userAuthentication: { endpoint: '/broadcasting/user-auth', headers: {} },
  };
  if (cmd.laravelAuth) options.authorizer = laravelAuthorizer(cmd.client);
  else {
    options.authEndpoint = `${cmd.base}/auth/channel`;
    if (cmd.token) options.bearerToken = cmd.token;
  }
  const echo = new Echo(options);
  clients.set(cmd.client, echo);
  echo.connector.pusher.connection.bind('state_change', (states) =>
    emit({ client: cmd.client, type: 'state', state: states.current, socket_id: echo.socketId() ?? null }));
}

// Echo's own channel objects: channel(name), private(name), join(name), encryptedPrivate(name).
function channelOf(cmd) {
  return clients.get(cmd.client)[cmd.kind](cmd.name);
}

function open(cmd) {
  const channel = channelOf(cmd);
  const full = channel.name;
  channel.subscribed(() => emit({ client: cmd.client, type: 'subscribed', channel: full }));
  channel.error((err) =>
    emit({ client: cmd.client, type: 'subscription_error', channel: full, status: err?.status ?? null, error: String(err?.error ?? err?.type ?? '') }));
  if (cmd.kind === 'join') {
    channel.here((users) => emit({ client: cmd.client, type: 'here', channel: full, users }));
    channel.joining((user) => emit({ client: cmd.client, type: 'joining', channel: full, user }));
    channel.leaving((user) => emit({ client: cmd.client, type: 'leaving', channel: full, user }));
    // What pusher-js itself holds for the members (their ids as the server sent them).
    const raw = clients.get(cmd.client).connector.pusher.channel(full);
    raw.bind('pusher:member_added', (m) =>
      emit({ client: cmd.client, type: 'member_added', channel: full, id: m.id, info: m.info }));
    raw.bind('pusher:subscription_succeeded', (members) => {
      const ids = [];
      members.each((m) => ids.push(m.id));
      emit({ client: cmd.client, type: 'members', channel: full, ids, me: members.me ?? null });
    });
  }
}

const handlers = {
  connect,
  open,
  listen: (cmd) => channelOf(cmd).listen(cmd.event, (data) =>
    emit({ client: cmd.client, type: 'event', channel: channelOf(cmd).name, listened: cmd.event, data })),
  listenForWhisper: (cmd) => channelOf(cmd).listenForWhisper(cmd.event, (data) =>
    emit({ client: cmd.client, type: 'whisper', channel: channelOf(cmd).name, event: cmd.event, data })),
  notification: (cmd) => channelOf(cmd).notification((notification) =>
    emit({ client: cmd.client, type: 'notification', channel: channelOf(cmd).name, notification })),
  whisper: (cmd) => channelOf(cmd).whisper(cmd.event, cmd.data),
  auth_answer: (cmd) => {
    const key = `${cmd.client} ${cmd.channel}`;
    const callback = pendingAuth.get(key);
    pendingAuth.delete(key);
    callback(null, cmd.answer);
  },
  leave: (cmd) => clients.get(cmd.client).leave(cmd.name),
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
    emit({ client: cmd?.client ?? null, type: 'agent_error', error: String(err?.stack ?? err) });
  }
});
process.stdin.on('end', () => process.exit(0));
emit({ type: 'ready' });
