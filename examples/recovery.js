// Recover what a pusher-js channel missed while its connection was down, from the relay's
// channel history (docs/recovery.md). A plain ES module, no build step:
//
//   import { recoverable } from "./recovery.js";
//   const channel = recoverable(pusher.subscribe("news"), {
//     historyUrl: "https://relay.example.com/v1/channels/news/messages",
//     headers: () => ({ Authorization: `Bearer ${token}` }),
//     onGap: () => reloadEverything(),
//   });
//   channel.bind("update", (data, meta) => render(data, meta.id));
//
// The channel's policy rule must grant `history` and ask for the envelope:
//   options = { history = { envelope = true } }
// so every published event arrives as {"id", "data"}. The helper unwraps it, hands the app the
// data as pusher-js would have, remembers the last id, and after every re-subscription
// (pusher:subscription_succeeded past the first) fetches `?since=<last id>`, applying what was
// missed once each, in order, before the events that arrive live meanwhile. At the first
// subscription it asks for the channel's newest id (`?limit=1`, applying nothing), so that what
// is missed before any event arrived is recovered too.

const SEEN_IDS = 1000; // ids remembered for dropping duplicates
const PAGE = 1000; // messages per history request (the relay's most)

export function recoverable(channel, { historyUrl, headers = () => ({}), onGap, fetchImpl }) {
  const doFetch = fetchImpl || globalThis.fetch.bind(globalThis);
  const handlers = new Map(); // event name -> [callback]
  const seen = new Set();
  const order = [];
  let lastId = null;
  let subscribedOnce = false;
  let baseline = null; // the first subscription's fetch of the newest id
  let startedEmpty = false; // the channel had no history then: all it has now followed it
  let recovering = null; // the buffer of live events while a recovery runs
  const live = (event, data) => {
    if (event.startsWith("pusher:") || event.startsWith("client-")) {
      dispatch(event, data, {});
      return;
    }
    if (recovering) recovering.push([event, data]);
    else apply(event, data);
  };

  function dispatch(event, data, meta) {
    for (const callback of handlers.get(event) || []) callback(data, meta);
  }

  function apply(event, envelope) {
    if (!envelope || typeof envelope !== "object" || !("id" in envelope)) {
      dispatch(event, envelope, {}); // not enveloped: passed through as pusher-js gave it
      return;
    }
    const { id } = envelope;
    if (seen.has(id)) return;
    seen.add(id);
    order.push(id);
    if (order.length > SEEN_IDS) seen.delete(order.shift());
    lastId = id;
    dispatch(event, asPusherJs(envelope.data), { id });
  }

  async function newestId() {
    const response = await doFetch(`${historyUrl}?limit=1`, { headers: headers() });
    if (!response.ok) throw new Error(`history: ${response.status}`);
    const page = await response.json();
    if (lastId !== null) return; // an event arrived meanwhile: it is the newer mark
    if (page.messages.length) lastId = page.messages[page.messages.length - 1].id;
    else startedEmpty = true;
  }

  async function recover() {
    recovering = [];
    try {
      await baseline;
      if (lastId === null && !startedEmpty) {
        // Nothing seen and the channel's newest id unknown: what was missed cannot be told.
        if (onGap) onGap({ type: "urn:realtime-relay:problem:history-gap", latest: null });
        return;
      }
      let since = lastId;
      if (since === null) {
        // Empty at the first subscription: everything it holds now was missed.
        const response = await doFetch(`${historyUrl}?limit=${PAGE}`, { headers: headers() });
        if (!response.ok) throw new Error(`history: ${response.status}`);
        const page = await response.json();
        if (page.messages.length >= PAGE) {
          if (onGap) onGap({ type: "urn:realtime-relay:problem:history-gap", latest: null });
          return;
        }
        for (const m of page.messages) apply(m.name, { id: m.id, data: m.data });
        return;
      }
      while (since) {
        const url = `${historyUrl}?since=${encodeURIComponent(since)}&limit=${PAGE}`;
        const response = await doFetch(url, { headers: headers() });
        if (response.status === 410) {
          if (onGap) onGap(await response.json());
          break;
        }
        if (!response.ok) throw new Error(`history: ${response.status}`);
        const page = await response.json();
        for (const m of page.messages) apply(m.name, { id: m.id, data: m.data });
        since = page.next;
      }
    } finally {
      const buffered = recovering;
      recovering = null;
      for (const [event, data] of buffered) apply(event, data);
    }
  }

  channel.bind_global(live);
  channel.bind("pusher:subscription_succeeded", () => {
    if (subscribedOnce) recover().catch((error) => console.warn("recovery failed", error));
    else baseline = newestId().catch((error) => console.warn("history: no newest id", error));
    subscribedOnce = true;
  });

  return {
    bind(event, callback) {
      handlers.set(event, [...(handlers.get(event) || []), callback]);
      return this;
    },
    get lastId() {
      return lastId;
    },
    recover,
    channel,
  };
}

// pusher-js JSON-parses the data of every event and hands strings that do not parse over as they
// are; history and the envelope give back a string published as a string: parse it the same way.
function asPusherJs(data) {
  if (typeof data !== "string") return data;
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}
