// agent.mjs, plus what a signed-in pusher-js client receives as a user.
//
// After op "signin", events sent to the client's user (pusher.user, fed by the server's
// #server-to-user-<id> channel) are reported as {type: "user_event", socket_id, event, data}, and a
// refused sign-in as {type: "signin_error", socket_id, status, error}; {type: "user_ready",
// socket_id} once the user's channel is subscribed (events sent to the user before that are not
// delivered). The agent's own protocol is unchanged: this file only patches pusher-js before
// agent.mjs loads.
import Pusher from 'pusher-js';

function emit(observation) {
  process.stdout.write(JSON.stringify(observation) + '\n');
}

const signin = Pusher.prototype.signin;
Pusher.prototype.signin = function signinAndReport() {
  if (!this.userEventsReported) {
    this.userEventsReported = true;
    this.user.bind('pusher:signin_error', (err) =>
      emit({ type: 'signin_error', socket_id: this.connection.socket_id, status: err?.status ?? null, error: String(err?.error ?? '') }));
    this.user.bind_global((event, data) => {
      if (event.startsWith('pusher:') || event.startsWith('pusher_internal:')) return;
      emit({ type: 'user_event', socket_id: this.connection.socket_id, event, data });
    });
  }
  const answer = signin.call(this);
  // Signed in is not yet reachable: pusher-js subscribes to #server-to-user-<id> after
  // pusher:signin_success. {type: "user_ready", socket_id} once that subscription succeeded.
  const ready = setInterval(() => {
    if (this.user.serverToUserChannel?.subscribed) {
      clearInterval(ready);
      emit({ type: 'user_ready', socket_id: this.connection.socket_id });
    }
  }, 10);
  return answer;
};

await import('./agent.mjs');
