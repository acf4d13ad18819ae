// ably-js, given the relay's /auth/token as its authUrl, obtains a token; prints one JSON line.
// Configured by environment: AUTH_URL, AUTH_METHOD, RELAY_TOKEN (optional), ABLY_HOST, ABLY_PORT.
import Ably from 'ably';

const headers = process.env.RELAY_TOKEN ? { Authorization: `Bearer ${process.env.RELAY_TOKEN}` } : {};
const client = new Ably.Rest({
  authUrl: process.env.AUTH_URL,
  authMethod: process.env.AUTH_METHOD ?? 'GET',
  authHeaders: headers,
  endpoint: process.env.ABLY_HOST,
  port: Number(process.env.ABLY_PORT),
  tls: false,
  logLevel: 0,
});

try {
  const details = await client.auth.authorize();
  console.log(JSON.stringify({ ok: true, token: details.token, clientId: details.clientId ?? null,
    capability: details.capability }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, code: err?.code ?? null, statusCode: err?.statusCode ?? null,
    message: String(err?.message ?? err) }));
}
