// Listen to a channel of a running relay with pusher-js, and print every event.
//   node examples/listen.mjs news                       (public channel)
//   RELAY_TOKEN=$(.venv/bin/relay token --user 42) node examples/listen.mjs private-user-42
// RELAY_URL (default http://127.0.0.1:8000) and RELAY_APP_KEY (default relay-dev-key) locate the
// relay. RELAY_WS_URL is for a relay whose sockets are elsewhere (`make offline`: API Gateway's
// ws://127.0.0.1:3001/offline); the token then travels in the URL, as API Gateway needs.
// A refused connection (a wrong app key: 4001) is reported and ends the listener with exit code 1.
import Pusher from 'pusher-js';

const channelName = process.argv[2] ?? 'news';
const relay = new URL(process.env.RELAY_URL ?? 'http://127.0.0.1:8000');
const sockets = new URL(process.env.RELAY_WS_URL ?? relay.href.replace(/^http/, 'ws'));
const token = process.env.RELAY_TOKEN;
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const tls = sockets.protocol === 'wss:';
const port = Number(sockets.port || (tls ? 443 : 80));
// pusher-js appends /app/{key}?protocol=7... to wsPath: `?token=...&path=` keeps it in the query.
const path = sockets.pathname.replace(/\/$/, '');
const wsPath = process.env.RELAY_WS_URL && token ? `${path}?token=${encodeURIComponent(token)}&path=` : path;

const pusher = new Pusher(process.env.RELAY_APP_KEY ?? 'relay-dev-key', {
  cluster: 'local', // required by pusher-js, unused when wsHost is set
  wsHost: sockets.hostname,
  ...(tls ? { wssPort: port } : { wsPort: port }),
  wsPath,
  forceTLS: tls,
  enabledTransports: [tls ? 'wss' : 'ws'], // only the relay's own scheme: no fallback elsewhere
  channelAuthorization: { endpoint: `${relay.origin}/auth/channel`, transport: 'ajax', headers },
});

pusher.connection.bind('connected', () => console.log(`connected: socket ${pusher.connection.socket_id}`));
pusher.connection.bind('unavailable', () =>
  console.error(`relay unreachable at ${sockets.origin}: still trying (is it running?)`));
pusher.connection.bind('error', (error) => {
  // A refusal (4000-4099, 4300+) arrives wrapped while connecting, bare once connected.
  const { code, message } = error?.error?.data ?? error?.data ?? {};
  if (code === undefined) return; // a transient failure: pusher-js retries, `unavailable` tells
  const hint = code === 4001 ? ' (is RELAY_APP_KEY the relay\'s app key?)' : '';
  console.error(`connection refused: ${code} ${message ?? ''}${hint}`);
  if ((code >= 4000 && code < 4100) || code >= 4300) {
    pusher.disconnect();
    process.exit(1);
  }
});
pusher.connection.bind('failed', () => {
  console.error('connection failed: no transport pusher-js can use here');
  process.exit(1);
});

const channel = pusher.subscribe(channelName);
channel.bind('pusher:subscription_succeeded', () => console.log(`subscribed: ${channelName}`));
channel.bind('pusher:subscription_error', (err) => console.log(`refused: ${channelName} (${err.status})`));
channel.bind_global((event, data) => {
  if (!event.startsWith('pusher:')) console.log(JSON.stringify({ channel: channelName, event, data }));
});
