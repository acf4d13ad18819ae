// Listen to a channel of a running relay with pusher-js, and print every event.
//   node examples/listen.mjs news                       (public channel)
//   RELAY_TOKEN=$(.venv/bin/relay token --user 42) node examples/listen.mjs private-user-42
// RELAY_URL (default http://127.0.0.1:8000) and RELAY_APP_KEY (default relay-dev-key) locate the relay.
import Pusher from 'pusher-js';

const channelName = process.argv[2] ?? 'news';
const relay = new URL(process.env.RELAY_URL ?? 'http://127.0.0.1:8000');
const token = process.env.RELAY_TOKEN;
const headers = token ? { Authorization: `Bearer ${token}` } : {};

const pusher = new Pusher(process.env.RELAY_APP_KEY ?? 'relay-dev-key', {
  cluster: 'local', // required by pusher-js, unused when wsHost is set
  wsHost: relay.hostname,
  wsPort: Number(relay.port || 80),
  forceTLS: relay.protocol === 'https:',
  enabledTransports: ['ws', 'wss'],
  channelAuthorization: { endpoint: `${relay.origin}/auth/channel`, transport: 'ajax', headers },
});

pusher.connection.bind('connected', () => console.log(`connected: socket ${pusher.connection.socket_id}`));
const channel = pusher.subscribe(channelName);
channel.bind('pusher:subscription_succeeded', () => console.log(`subscribed: ${channelName}`));
channel.bind('pusher:subscription_error', (err) => console.log(`refused: ${channelName} (${err.status})`));
channel.bind_global((event, data) => {
  if (!event.startsWith('pusher:')) console.log(JSON.stringify({ channel: channelName, event, data }));
});
