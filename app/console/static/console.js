// The realtime-relay console: the page's own pusher-js connection, and the relay's own API asked
// with a backend key (X-API-Key). Everything shown is set as text, never as HTML: channel names,
// event data and member info come from whoever publishes or joins.
'use strict';

(() => {
  const KEY_SLOT = 'realtime-relay-console-key'; // sessionStorage: this tab only
  const CHANNELS_EVERY_MS = 2000;
  const MEMBERS_EVERY_MS = 1500;
  const LOG_LIMIT = 500;
  const NUDGE_AFTER_MS = 1000;
  const NUDGE_EVERY_MS = 5000;

  const $ = (id) => document.getElementById(id);
  const state = {
    key: null,
    config: null,
    pusher: null,
    watched: new Map(), // channel name -> its chip
    membersChannel: null,
    timers: [],
    generation: 0, // bumped on each start and stop: a stale poll stops itself
    lostAt: null, // when the socket last left `connected`
    nudgedAt: 0, // when the page last asked pusher-js to reconnect at once
  };

  function el(tag, options = {}, children = []) {
    const node = document.createElement(tag);
    if (options.className) node.className = options.className;
    if (options.text !== undefined) node.textContent = options.text;
    if (options.title) node.title = options.title;
    for (const [name, value] of Object.entries(options.data || {})) node.dataset[name] = value;
    for (const child of children) node.append(child);
    return node;
  }

  function notice(text) {
    const box = $('notice');
    box.textContent = text || '';
    box.hidden = !text;
  }

  function describe(body, status) {
    if (body && typeof body === 'object') return body.detail || body.title || `HTTP ${status}`;
    return `HTTP ${status}`;
  }

  // One call to the relay's API with the key; a problem+json answer becomes an Error.
  async function api(path, { method = 'GET', body } = {}) {
    const headers = { 'X-API-Key': state.key };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    if (!response.ok) {
      const error = new Error(describe(parsed, response.status));
      error.status = response.status;
      throw error;
    }
    return parsed;
  }

  // -- the key ----------------------------------------------------------------------------
  async function begin() {
    bindForms();
    const kept = sessionStorage.getItem(KEY_SLOT);
    if (kept) return start(kept);
    try {
      const response = await fetch('/console/api/defaults', { cache: 'no-store' });
      const defaults = await response.json();
      if (defaults.development_key) {
        $('key-note').textContent = 'the development key, filled in (RELAY_ENV=development)';
        return start(defaults.development_key);
      }
    } catch {
      // No defaults: the key is typed in.
    }
    notice('Enter a backend key (one of RELAY_API_KEYS) to see the relay.');
    $('key').focus();
    return undefined;
  }

  async function start(key) {
    stop();
    state.key = key;
    const generation = state.generation;
    let config;
    try {
      config = await api('/console/api/config');
    } catch (error) {
      if (generation !== state.generation) return;
      state.key = null;
      sessionStorage.removeItem(KEY_SLOT);
      notice(error.status === 401 || error.status === 403
        ? `The relay refused this key: ${error.message}`
        : `The relay did not answer: ${error.message}`);
      return;
    }
    if (generation !== state.generation) return;
    sessionStorage.setItem(KEY_SLOT, key);
    $('key').value = '';
    state.config = config;
    notice('');
    connect(config);
    poll(refreshChannels, CHANNELS_EVERY_MS, generation);
    poll(refreshMembers, MEMBERS_EVERY_MS, generation);
  }

  function stop() {
    state.generation += 1;
    state.timers.forEach(clearTimeout);
    state.timers = [];
    if (state.pusher) state.pusher.disconnect();
    state.pusher = null;
    state.lostAt = null;
    state.watched.clear();
    $('watched').replaceChildren();
    showStatus('initialized', 'not connected');
    $('socket').textContent = '';
  }

  function forget() {
    stop();
    state.key = null;
    state.config = null;
    sessionStorage.removeItem(KEY_SLOT);
    $('channels').tBodies[0].replaceChildren();
    $('members').replaceChildren();
    $('key-note').textContent = 'kept in this tab only, sent as X-API-Key';
    notice('Key forgotten. Enter a backend key to see the relay again.');
  }

  // Run `task` now and then every `every` ms after it finished, until the next start or stop.
  function poll(task, every, generation) {
    const run = async () => {
      if (generation !== state.generation) return;
      if (!document.hidden) await task();
      if (generation === state.generation) state.timers.push(setTimeout(run, every));
    };
    run();
  }

  // -- the connection ---------------------------------------------------------------------
  function originAllowed(config) {
    const origins = config.allowed_origins;
    return origins.includes('*') || origins.includes(window.location.origin);
  }

  function showStatus(current, text) {
    const status = $('status');
    status.dataset.state = current;
    status.textContent = text || current;
  }

  function connect(config) {
    if (!originAllowed(config)) {
      showStatus('failed', 'refused');
      notice(`This page's origin (${window.location.origin}) is not in RELAY_ALLOWED_ORIGINS, `
        + 'so the relay refuses its socket: add it to watch events. Channels, members and '
        + 'publishing work without it.');
      return;
    }
    const secure = window.location.protocol === 'https:';
    const port = Number(window.location.port) || (secure ? 443 : 80);
    const pusher = new window.Pusher(config.app_key, {
      cluster: 'local', // required by pusher-js, unused with wsHost
      wsHost: window.location.hostname,
      wsPort: port,
      wssPort: port,
      forceTLS: secure,
      enabledTransports: [secure ? 'wss' : 'ws'],
      disableStats: true,
      channelAuthorization: { customHandler: authorize },
    });
    pusher.connection.bind('state_change', ({ previous, current }) => {
      if (current === 'connected') state.lostAt = null;
      else if (previous === 'connected') state.lostAt = Date.now();
      showStatus(current === 'disconnected' && state.lostAt ? 'connecting' : current);
      $('socket').textContent = current === 'connected' ? `socket ${pusher.connection.socket_id}` : '';
    });
    pusher.connection.bind('error', (error) => {
      const detail = error && error.data && error.data.message;
      if (detail) notice(`Connection: ${detail}`);
    });
    state.pusher = pusher;
    for (const chip of $('watched').children) subscribe(chip.dataset.channel);
  }

  // The relay answers the API again while the socket is still down (a restart): pusher-js would
  // wait out its back-off (about 15 s), so the page reconnects at once, through the public API
  // (pusher-js subscribes again to every channel on `connected`). At most every NUDGE_EVERY_MS.
  function nudge() {
    const pusher = state.pusher;
    const now = Date.now();
    if (!pusher || !state.lostAt || now - state.lostAt < NUDGE_AFTER_MS) return;
    if (now - state.nudgedAt < NUDGE_EVERY_MS) return;
    state.nudgedAt = now;
    pusher.disconnect();
    pusher.connect();
  }

  // pusher-js channelAuthorization: the console's own socket, signed with the backend key.
  function authorize({ socketId, channelName }, callback) {
    api('/console/api/auth', {
      method: 'POST',
      body: { socket_id: socketId, channel_name: channelName },
    }).then((answer) => callback(null, answer), (error) => callback(error, null));
  }

  // -- channels and members ---------------------------------------------------------------
  async function refreshChannels() {
    let found;
    try {
      found = (await api('/console/api/channels')).channels;
    } catch (error) {
      $('channels-count').textContent = `(${error.message})`;
      return;
    }
    const rows = found.map(({ channel, subscriptions, users }) => {
      const row = el('tr', { data: { channel } }, [
        el('td', { text: channel }),
        el('td', { text: String(subscriptions ?? '') }),
        el('td', { text: users === null ? '' : String(users) }),
      ]);
      row.addEventListener('click', () => choose(channel));
      return row;
    });
    nudge();
    $('channels').tBodies[0].replaceChildren(...rows);
    $('channels-empty').hidden = rows.length > 0;
    $('channels-count').textContent = `(${rows.length})`;
  }

  function choose(channel) {
    $('watch-channel').value = channel;
    $('publish-channel').value = channel;
    if (channel.startsWith('presence-')) showMembers(channel);
  }

  function showMembers(channel) {
    state.membersChannel = channel;
    $('members-channel').value = channel;
    $('members').replaceChildren();
    refreshMembers();
  }

  async function refreshMembers() {
    const channel = state.membersChannel;
    if (!channel || !state.key) return;
    let found;
    try {
      found = await api(`/v1/channels/${encodeURIComponent(channel)}/members`);
    } catch (error) {
      if (channel === state.membersChannel) $('members-title').textContent = `${channel}: ${error.message}`;
      return;
    }
    if (channel !== state.membersChannel) return;
    $('members-title').textContent = `${channel}: ${found.count} member${found.count === 1 ? '' : 's'}`;
    const own = state.config && state.config.member;
    $('members').replaceChildren(...found.members.map(({ user_id: userId, user_info: info }) => el(
      'li',
      { data: { user: userId } },
      [
        el('strong', { text: userId }),
        el('code', { text: JSON.stringify(info) }),
        ...(userId === own ? [el('span', { className: 'muted', text: '(this console)' })] : []),
      ],
    )));
  }

  // -- the event log ----------------------------------------------------------------------
  function clock() {
    return new Date().toISOString().slice(11, 23);
  }

  function log(channel, event, detail, kind = 'event') {
    const entry = el('li', { className: kind, data: { channel, event } }, [
      el('time', { text: clock() }),
      el('span', { className: 'channel', text: channel }),
      el('span', { className: 'event', text: event }),
      el('code', { text: detail }),
    ]);
    const list = $('log');
    list.prepend(entry);
    while (list.children.length > LOG_LIMIT) list.lastElementChild.remove();
  }

  function shown(data) {
    return typeof data === 'string' ? JSON.stringify(data) : JSON.stringify(data ?? null);
  }

  // What pusher-js's own events on a channel mean, for the log.
  function internal(event, data) {
    switch (event) {
      case 'pusher:subscription_succeeded':
        return data && data.count !== undefined ? `subscribed; ${data.count} members` : 'subscribed';
      case 'pusher:subscription_error':
        return `refused: ${data && (data.error || data.status)}`;
      case 'pusher:member_added':
        return `${data.id} joined`;
      case 'pusher:member_removed':
        return `${data.id} left`;
      default:
        return shown(data);
    }
  }

  function watch(channel) {
    const name = channel.trim();
    if (!name || state.watched.has(name)) return;
    if (name.startsWith('private-encrypted-')) {
      notice('Encrypted channels are end-to-end: the console does not watch them.');
      return;
    }
    const close = el('button', { text: '×', title: `stop watching ${name}` });
    const chip = el('li', { data: { channel: name, state: 'pending' }, title: name }, [
      el('span', { text: name }), close,
    ]);
    close.addEventListener('click', () => unwatch(name));
    $('watched').append(chip);
    state.watched.set(name, chip);
    if (name.startsWith('presence-')) {
      log(name, 'console', `watching joins the channel as the member ${state.config.member}`, 'system');
    }
    if (state.pusher) subscribe(name);
  }

  function subscribe(name) {
    const channel = state.pusher.subscribe(name);
    channel.unbind_global();
    channel.bind_global((event, data) => {
      const chip = state.watched.get(name);
      if (event === 'pusher:subscription_succeeded' && chip) chip.dataset.state = 'subscribed';
      if (event === 'pusher:subscription_error' && chip) chip.dataset.state = 'refused';
      if (event.startsWith('pusher:')) log(name, event.slice(7), internal(event, data), 'system');
      else log(name, event, shown(data));
    });
  }

  function unwatch(name) {
    const chip = state.watched.get(name);
    if (chip) chip.remove();
    state.watched.delete(name);
    if (state.pusher) state.pusher.unsubscribe(name);
  }

  // -- publishing -------------------------------------------------------------------------
  async function publish() {
    const result = $('publish-result');
    const raw = $('publish-data').value;
    let data = raw;
    if (!$('publish-text').checked) {
      try {
        data = JSON.parse(raw);
      } catch {
        result.textContent = 'data is not JSON (tick "as text" to send it as a string)';
        return;
      }
    }
    const body = { name: $('publish-event').value.trim(), channel: $('publish-channel').value.trim(), data };
    try {
      const answer = await api('/v1/events', { method: 'POST', body });
      result.textContent = `published at ${clock()} (${answer.accepted} accepted)`;
    } catch (error) {
      result.textContent = `refused: ${error.message}`;
    }
  }

  // -- the forms --------------------------------------------------------------------------
  function on(id, handler) {
    $(id).addEventListener('submit', (event) => {
      event.preventDefault();
      handler();
    });
  }

  function bindForms() {
    on('key-form', () => {
      const key = $('key').value.trim();
      if (key) start(key);
    });
    $('forget').addEventListener('click', forget);
    on('members-form', () => {
      const channel = $('members-channel').value.trim();
      if (channel) showMembers(channel);
    });
    on('watch-form', () => {
      if (!state.key) return;
      watch($('watch-channel').value);
      $('watch-channel').value = '';
    });
    $('clear').addEventListener('click', () => $('log').replaceChildren());
    on('publish-form', () => {
      if (state.key) publish();
    });
  }

  begin();
})();
