// supabase-js with a token the relay minted: fetch it from /auth/token, hand it to
// `realtime.setAuth`, join a private channel, receive one broadcast, then refresh the token.
// Usage: node supabase_setauth.mjs '<json config>'; prints one JSON observation per line.
import { createClient } from '@supabase/supabase-js';

const config = JSON.parse(process.argv[2]);

function emit(observation) {
  process.stdout.write(JSON.stringify(observation) + '\n');
}

async function relayToken(bearer) {
  const headers = bearer ? { Authorization: `Bearer ${bearer}` } : {};
  const response = await fetch(`${config.relayBase}/auth/token`, { headers });
  return { status: response.status, body: await response.json() };
}

function within(ms, what, promise) {
  const timer = new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));
  return Promise.race([promise, timer]);
}

async function main() {
  const first = await relayToken(config.userToken);
  emit({ type: 'token', status: first.status, body: first.body });
  const anonymous = await relayToken(null);
  emit({ type: 'anonymous_token', status: anonymous.status, body: anonymous.body });

  const supabase = createClient(config.supabaseUrl, config.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
  });
  await supabase.realtime.setAuth(first.body.access_token);

  let received;
  const broadcast = new Promise((resolve) => { received = resolve; });
  const channel = supabase.channel(config.channel, { config: { private: true } });
  channel.on('broadcast', { event: '*' }, (message) => {
    emit({ type: 'broadcast', message });
    received();
  });
  const subscribed = new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      emit({ type: 'status', status, error: err ? String(err.message ?? err) : null });
      if (status === 'SUBSCRIBED') resolve();
      else if (status !== 'CLOSED') reject(new Error(`subscribe: ${status}`));
    });
  });
  await within(10000, 'SUBSCRIBED', subscribed);
  await within(10000, 'a broadcast', broadcast);

  // Tokens carry whole seconds: wait for the next one so that the refreshed token differs.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const second = await relayToken(config.userToken);
  await supabase.realtime.setAuth(second.body.access_token);
  emit({ type: 'refreshed', access_token: second.body.access_token });

  await new Promise((resolve) => setTimeout(resolve, 300));
  await supabase.removeAllChannels();
  supabase.realtime.disconnect();
  emit({ type: 'done' });
}

main().then(
  () => process.exit(0),
  (error) => {
    emit({ type: 'error', error: String(error?.stack ?? error) });
    process.exit(1);
  },
);
