/*
 * JSONgle-Server demo client: a small, framework-free example for client authors.
 *
 * Read it top to bottom: connecting, the session-hello, rooms, the call (the JSONgle message flow
 * between two browsers), the chat, then the page's wiring. Every message travels as one Socket.IO
 * event named `jsongle` whose argument is an envelope { id, from, to, jsongle: { action, ... } }
 * (docs: PROTOCOL.md in the server's repository).
 *
 * URL parameters (all optional): ?uid=&dn=&token= fill the session fields, ?room= the room field,
 * ?autojoin=1 connects and joins at once, ?autoanswer=1 accepts incoming calls without a click,
 * ?ice=all signals every ICE candidate (the default signals loopback candidates only, see below).
 *
 * Everything the page knows is in `window.demo` (try `demo.state` in the devtools console); the
 * end-to-end test reads it too.
 */
'use strict';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

/** A P2P room id may not start with this prefix: such ids name multi-user (MUC) rooms. */
const MUC_PREFIX = '#muc#';

/**
 * ICE candidates this page tells its peer about. Both browsers of the demo run on one machine, so
 * loopback is all they need, and nothing leaves it. Open the page with ?ice=all to call another
 * machine on your network (there are still no STUN/TURN servers: host candidates only).
 */
const SIGNALED_ADDRESSES = new Set(['127.0.0.1', '::1']);
const signalAllCandidates = params.get('ice') === 'all';

const RTC_CONFIGURATION = { iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' };

const demo = {
  state: {
    /** disconnected → connecting → connected (waiting for the server's hello) → ready (hello done) */
    connection: 'disconnected',
    /** Our session identity: the server's `to` in everything it sends us. */
    sid: '',
    /** The server's id: the `to` of our requests (its `from` in the hello). */
    serverId: '',
    uid: '',
    dn: '',
    /** { rid, kind: 'p2p' | 'muc', members: [{ uid, dn, sid }] } while in a room. */
    room: null,
    /** The current or last call, see startCall(). */
    call: null,
    /** { mid, from, content, mine, receipts: [] } */
    chat: [],
    /** { errorCode, errorDetails, at } newest last. */
    errors: [],
  },
  /** The current call's RTCPeerConnection. */
  pc: null,
  /** Every envelope sent and received: { dir: 'in' | 'out', envelope, at }. */
  log: [],
  /** Epoch milliseconds of the current call's milestones (proposed, connected). */
  timings: {},
  socket: null,
};
window.demo = demo;
const state = demo.state;

/* ------------------------------------------------------------------------------------------------
 * Sending and receiving envelopes
 * --------------------------------------------------------------------------------------------- */

const now = () => new Date().toJSON();
const epochMs = () => performance.timeOrigin + performance.now();

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Plain-HTTP pages that are not localhost have no randomUUID (it needs a secure context).
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Sends one envelope; returns its id (which the server echoes in receipts). */
function send(to, jsongle) {
  // `from` may stay null: the server knows who we are from the connection and never trusts it.
  const envelope = { id: newId(), from: null, to, jsongle };
  record('out', envelope);
  demo.socket.emit('jsongle', envelope);
  return envelope.id;
}

/** Requests to the server (`iq-set`) are answered by `iq-result` or `iq-error` with the same transaction. */
const pendingRequests = new Map();

function request(query, namespace, description) {
  const transaction = newId();
  send(state.serverId, { action: 'iq-set', query, namespace, transaction, description });
  return new Promise((resolve, reject) => pendingRequests.set(transaction, { resolve, reject }));
}

function onMessage(message) {
  record('in', message);
  const { action } = message.jsongle;
  switch (action) {
    case 'iq-get':
      if (message.jsongle.query === 'session-hello') answerHello(message);
      break;
    case 'ack':
      onHelloAck(message);
      break;
    case 'iq-result':
    case 'iq-error': {
      const pending = pendingRequests.get(message.jsongle.transaction);
      if (!pending) break;
      pendingRequests.delete(message.jsongle.transaction);
      if (action === 'iq-result') pending.resolve(message.jsongle.description);
      else pending.reject(message.jsongle.description);
      break;
    }
    case 'session-error':
      showError(message.jsongle.description);
      break;
    case 'session-event':
      onSessionEvent(message);
      break;
    case 'session-text':
      onText(message);
      break;
    default:
      onCallMessage(message);
  }
  render();
}

/* ------------------------------------------------------------------------------------------------
 * Connecting and the session-hello
 * --------------------------------------------------------------------------------------------- */

async function connect() {
  state.uid = $('uid').value.trim();
  state.dn = $('dn').value.trim();
  if (!state.uid) return showError({ errorDetails: 'Type a user id first' });
  state.connection = 'connecting';
  render();
  let config;
  try {
    // The page is served by the REST port; signaling is on wsPort, which config.json names.
    config = await (await fetch('config.json')).json();
  } catch (error) {
    showError({ errorDetails: `Cannot read config.json: ${error.message}` });
    return disconnected();
  }
  const url = `${config.useHTTPS ? 'https' : 'http'}://${location.hostname}:${config.wsPort}`;
  const socket = io(url, {
    // WebSocket only: no long-polling round trips, and no CORS needed for the signaling port.
    transports: ['websocket'],
    auth: { appToken: $('token').value },
    // A new connection is a new session (new identity, no rooms): the user reconnects by hand.
    reconnection: false,
  });
  demo.socket = socket;
  socket.on('connect', () => {
    state.connection = 'connected';
    render();
  });
  socket.on('connect_error', (error) => {
    // A refusal by the server carries { errorCode, errorDetails } (401001 bad token, 503001 full...).
    const hint = config.useHTTPS ? ` If the server uses a self-signed certificate, open ${url}/ once and accept it.` : '';
    showError(error.data ?? { errorDetails: `Cannot connect to ${url}: ${error.message}.${hint}` });
    disconnected();
  });
  socket.on('disconnect', (reason) => {
    if (reason !== 'io client disconnect') showError({ errorDetails: `Disconnected from the server (${reason})` });
    disconnected();
  });
  socket.on('jsongle', onMessage);
}

/** The server asks who we are right after accepting the connection (PROTOCOL.md §3). */
function answerHello(message) {
  state.sid = message.to;
  state.serverId = message.from;
  const description = state.dn ? { uid: state.uid, dn: state.dn } : { uid: state.uid };
  send(message.from, { action: 'iq-result', query: 'session-hello', transaction: message.jsongle.transaction, description });
}

function onHelloAck(message) {
  // A failed ack is followed by a session-error that says why (shown by onMessage).
  if (message.jsongle.status !== 'success') return;
  state.connection = 'ready';
  if (params.get('autojoin') === '1' && $('room').value.trim()) void join();
}

function disconnect() {
  hangUp();
  demo.socket?.close();
  disconnected();
}

function disconnected() {
  if (state.call && state.call.state !== 'ended') endCall('disconnected');
  state.connection = 'disconnected';
  state.room = null;
  pendingRequests.clear();
  render();
}

/* ------------------------------------------------------------------------------------------------
 * Rooms: P2P (session-join, two members, calls and chat) or MUC (muc-join, chat only)
 * --------------------------------------------------------------------------------------------- */

async function join() {
  const rid = $('room').value.trim();
  if (!rid) return;
  const kind = rid.startsWith(MUC_PREFIX) ? 'muc' : 'p2p';
  try {
    const result = kind === 'muc' ? await request('muc-join', 'muc', { rid }) : await request('session-join', 'room', { rid });
    // The answer lists the members who were there before us; session-events tell the rest.
    state.room = { rid, kind, members: result.members };
    state.chat = [];
    clearError();
  } catch (error) {
    showError(error); // 403001 room full, 409002 room of the other kind, ...
  }
  render();
}

async function leave() {
  if (!state.room) return;
  hangUp();
  const { rid } = state.room;
  state.room = null;
  render();
  try {
    await request('session-leave', 'room', { rid });
  } catch (error) {
    showError(error);
  }
}

function onSessionEvent(message) {
  const { event, description = {} } = message.jsongle;
  if (event === 'ack') return onReceipt(description);
  if (!state.room || description.rid !== state.room.rid) return;
  const { member } = description;
  if (event === 'joined') {
    state.room.members.push(member);
  } else if (event === 'left') {
    state.room.members = state.room.members.filter((m) => m.sid !== member.sid);
    // The other side of our call is gone (closed its page, lost its network...): the call is over.
    if (state.room.kind === 'p2p' && state.call && state.call.state !== 'ended') endCall('peer-left');
  }
}

const nameOf = (member) => (member ? member.dn || member.uid : 'someone');

/* ------------------------------------------------------------------------------------------------
 * The call (P2P rooms only). The flow, as the caller (initiator) and the callee (responder) see it:
 *
 *   caller                              server                             callee
 *   session-propose ──────────────────────┼──────────────────────────────▶ (ringing)
 *   ◀──────────────────────────── session-info trying
 *   ◀──────────────────────────────────────────────────────────── session-info ringing
 *   ◀──────────────────────────────────────────────────────────── session-proceed   (accepted)
 *   session-initiate {offer} ──────────────────────────────────────────▶
 *   ◀──────────────────────────────────────────────────────────── session-accept {answer}
 *   transport-info {candidate} ◀──────────────────────────────────────▶ transport-info {candidate}
 *   session-info active ◀─────────────────────────────────────────────▶ session-info active
 *   session-terminate ◀───────────────────────────────────────────────▶ (either side hangs up)
 *
 * Before the callee proceeds, the caller may give up (session-retract) and the callee may refuse
 * (session-decline). All of them go `to` the room id; the server relays them to the other member.
 * --------------------------------------------------------------------------------------------- */

const CALL_ACTIONS = new Set([
  'session-propose',
  'session-info',
  'session-proceed',
  'session-initiate',
  'transport-info',
  'session-decline',
  'session-retract',
  'session-accept',
  'session-terminate',
]);

/** Sends a call message with the fields every one of them carries. */
function sendCall(action, description, reason) {
  if (!state.room) return;
  const { sid, initiator, responder } = state.call;
  const jsongle = { action, namespace: 'call', sid, initiator, responder, description };
  if (reason) jsongle.reason = reason;
  return send(state.room.rid, jsongle);
}

async function startCall() {
  const peer = state.room?.members[0];
  if (!peer || isInCall()) return;
  state.call = {
    sid: newId(),
    direction: 'outgoing',
    state: 'new',
    initiator: state.uid,
    responder: peer.uid,
    peerName: nameOf(peer),
    endReason: '',
  };
  demo.timings = {};
  render();
  const call = state.call;
  if (!(await openLocalMedia(call))) return endCall('no-media');
  if (call.state !== 'new') return; // hung up meanwhile
  demo.timings.proposed = epochMs();
  sendCall('session-propose', { initiated: now(), media: 'video' });
}

async function acceptCall() {
  const call = state.call;
  if (!call || call.direction !== 'incoming' || call.state !== 'ringing') return;
  call.state = 'accepting';
  render();
  if (!(await openLocalMedia(call))) {
    if (call.state === 'ended') return; // the caller gave up meanwhile
    sendCall('session-decline', { ended: now() }, 'no-media');
    return endCall('no-media');
  }
  call.state = 'proceeded';
  sendCall('session-proceed', { proceeded: now() });
  render();
}

function declineCall() {
  if (state.call?.direction !== 'incoming' || state.call.state !== 'ringing') return;
  sendCall('session-decline', { ended: now() });
  endCall('declined');
}

/** Hang up whatever the call's stage: retract or decline before it is set up, terminate after. */
function hangUp() {
  const call = state.call;
  if (!call || call.state === 'ended') return;
  if (call.state === 'active' || call.state === 'offering') sendCall('session-terminate', { ended: now() });
  else if (call.direction === 'outgoing') sendCall('session-retract', { ended: now() });
  else sendCall('session-decline', { ended: now() });
  endCall('hung-up');
}

function isInCall() {
  return state.call !== null && state.call.state !== 'ended';
}

function onCallMessage(message) {
  const { action, sid, reason, description = {} } = message.jsongle;
  if (!CALL_ACTIONS.has(action)) return;

  if (action === 'session-propose') {
    if (state.room?.kind !== 'p2p') return;
    if (isInCall()) {
      // Busy: refuse the new call without touching the current one.
      const { initiator, responder } = message.jsongle;
      send(state.room.rid, {
        action: 'session-decline',
        namespace: 'call',
        sid,
        initiator,
        responder,
        reason: 'busy',
        description: { ended: now() },
      });
      return;
    }
    const caller = state.room?.members.find((m) => m.uid === message.jsongle.initiator) ?? state.room?.members[0];
    state.call = {
      sid,
      direction: 'incoming',
      state: 'ringing',
      initiator: message.jsongle.initiator,
      responder: message.jsongle.responder,
      peerName: nameOf(caller),
      endReason: '',
    };
    demo.timings = {};
    sendCall('session-info', { rang: now() }, 'ringing');
    if (params.get('autoanswer') === '1') void acceptCall();
    return;
  }

  const call = state.call;
  if (!call || call.sid !== sid || call.state === 'ended') return; // a late message of an old call

  switch (action) {
    case 'session-info':
      if (reason === 'trying' || reason === 'ringing') {
        if (call.state === 'new' || call.state === 'trying') call.state = reason;
      } else if (reason === 'unreachable') {
        endCall('unreachable');
      } else if (reason === 'active') {
        call.remoteActive = true;
      }
      break;
    case 'session-proceed':
      call.state = 'proceeded';
      void sendOffer(call);
      break;
    case 'session-initiate':
      void sendAnswer(call, description.offer);
      break;
    case 'session-accept':
      whenReady(call, () => demo.pc.setRemoteDescription(description.answer));
      break;
    case 'transport-info':
      // Candidates may arrive while the offer/answer is still being applied: queue them behind it.
      if (description.candidate) whenReady(call, () => demo.pc.addIceCandidate(description.candidate));
      break;
    case 'session-decline':
      endCall(reason === 'busy' ? 'busy' : 'declined');
      break;
    case 'session-retract':
      endCall('retracted');
      break;
    case 'session-terminate':
      endCall('terminated');
      break;
  }
}

/** Runs the peer-connection steps of a call one after another, in the order their messages came. */
function whenReady(call, step) {
  call.steps = (call.steps ?? Promise.resolve())
    .then(() => (state.call === call && demo.pc ? step() : undefined))
    .catch((error) => showError({ errorDetails: `WebRTC: ${error.message}` }));
}

/** Caller, after session-proceed: the offer goes in session-initiate. */
function sendOffer(call) {
  createPeerConnection(call);
  whenReady(call, async () => {
    const offer = await demo.pc.createOffer();
    await demo.pc.setLocalDescription(offer);
    call.state = 'offering';
    sendCall('session-initiate', { offering: now(), offer: { type: offer.type, sdp: offer.sdp } });
    releaseCandidates(call);
    render();
  });
}

/** Callee, on session-initiate: apply the offer, answer with session-accept. */
function sendAnswer(call, offer) {
  createPeerConnection(call);
  whenReady(call, async () => {
    await demo.pc.setRemoteDescription(offer);
    const answer = await demo.pc.createAnswer();
    await demo.pc.setLocalDescription(answer);
    call.state = 'offering';
    sendCall('session-accept', { offered: now(), answer: { type: answer.type, sdp: answer.sdp } });
    releaseCandidates(call);
    render();
  });
}

function createPeerConnection(call) {
  const pc = new RTCPeerConnection(RTC_CONFIGURATION);
  demo.pc = pc;
  for (const track of call.localStream.getTracks()) pc.addTrack(track, call.localStream);

  // Candidates are sent as soon as found ("trickle ICE"), but not before our offer or answer: the
  // peer cannot use a candidate before the description it belongs to. Until then they wait here.
  call.heldCandidates = [];
  pc.onicecandidate = ({ candidate }) => {
    if (!candidate || state.call !== call) return; // null: gathering is complete
    if (!signalAllCandidates && !SIGNALED_ADDRESSES.has(candidateAddress(candidate))) return;
    if (call.heldCandidates) call.heldCandidates.push(candidate);
    else sendCandidate(candidate);
  };

  pc.ontrack = ({ track, streams }) => {
    const video = $('remote-video');
    video.srcObject = streams[0] ?? new MediaStream([track]);
    // Autoplay with sound may need a click on the page first; the video shows anyway once it plays.
    video.play().catch(() => undefined);
  };

  pc.onconnectionstatechange = () => {
    if (state.call !== call || call.state === 'ended') return;
    if (pc.connectionState === 'connected' && call.state !== 'active') {
      call.state = 'active';
      call.activeSince = Date.now();
      demo.timings.connected = epochMs();
      sendCall('session-info', { actived: now() }, 'active');
    } else if (pc.connectionState === 'failed') {
      // Tell the server, for its failed-call metrics, then hang up.
      send(state.serverId, { action: 'session-metrics', description: { error: 'ice-failed' } });
      sendCall('session-terminate', { ended: now() }, 'failed');
      endCall('ice-failed');
    }
    render();
  };
}

function sendCandidate(candidate) {
  sendCall('transport-info', { establishing: now(), candidate: candidate.toJSON() });
}

/** Our offer or answer is out: the candidates found meanwhile can follow it. */
function releaseCandidates(call) {
  for (const candidate of call.heldCandidates) sendCandidate(candidate);
  call.heldCandidates = null;
}

/** The IP address of a candidate ("candidate:… 1 udp 2122260223 127.0.0.1 50932 typ host …"). */
function candidateAddress(candidate) {
  return candidate.address ?? candidate.candidate.split(' ')[4] ?? '';
}

/** Opens camera and microphone for `call`; false if there are none or the call ended meanwhile. */
async function openLocalMedia(call) {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  } catch (error) {
    showError({ errorDetails: `No camera or microphone: ${error.message}` });
    return false;
  }
  if (call.state === 'ended') {
    for (const track of stream.getTracks()) track.stop();
    return false;
  }
  call.localStream = stream;
  $('local-video').srcObject = stream;
  return true;
}

/** Ends the call locally, whoever ended it; the messages to the peer are the caller's business. */
function endCall(reason) {
  const call = state.call;
  if (!call || call.state === 'ended') return;
  if (call.activeSince && state.connection === 'ready') {
    // A finished call's duration feeds the server's metrics (PROTOCOL.md §5, session-metrics).
    send(state.serverId, { action: 'session-metrics', description: { duration: (Date.now() - call.activeSince) / 1000 } });
  }
  call.state = 'ended';
  call.endReason = reason;
  demo.pc?.close();
  demo.pc = null;
  for (const track of call.localStream?.getTracks() ?? []) track.stop();
  $('local-video').srcObject = null;
  $('remote-video').srcObject = null;
  render();
}

/* ------------------------------------------------------------------------------------------------
 * Chat: session-text to the room. The server answers each one with a receipt (session-event
 * `ack`, type `server-received`); in a P2P room the other member sends its own (type `received`).
 * --------------------------------------------------------------------------------------------- */

const chatNamespace = () => (state.room.kind === 'muc' ? 'muc' : 'message');

function sendText() {
  const content = $('chat-input').value.trim();
  if (!content || !state.room) return;
  const mid = send(state.room.rid, { action: 'session-text', namespace: chatNamespace(), description: { content } });
  state.chat.push({ mid, from: state.dn || state.uid, content, mine: true, receipts: [] });
  $('chat-input').value = '';
  render();
}

function onText(message) {
  if (!state.room) return;
  const { content } = message.jsongle.description ?? {};
  // In a MUC room `from` is "rid/uid" of the sender; in a P2P room it is the rid: the other member.
  const fromUid = state.room.kind === 'muc' ? message.from.slice(state.room.rid.length + 1) : undefined;
  const sender = fromUid ? (state.room.members.find((m) => m.uid === fromUid) ?? { uid: fromUid }) : state.room.members[0];
  state.chat.push({ mid: message.id, from: nameOf(sender), content: String(content ?? ''), mine: false, receipts: [] });
  if (state.room.kind === 'p2p') {
    send(state.room.rid, {
      action: 'session-event',
      namespace: 'message',
      event: 'ack',
      description: { mid: message.id, type: 'received' },
    });
  }
}

function onReceipt({ mid, type }) {
  const entry = state.chat.find((m) => m.mine && m.mid === mid);
  if (entry && !entry.receipts.includes(type)) entry.receipts.push(type);
}

/* ------------------------------------------------------------------------------------------------
 * Errors: iq-error and session-error carry { errorCode, errorDetails } (PROTOCOL.md §7)
 * --------------------------------------------------------------------------------------------- */

function showError(description = {}) {
  state.errors.push({ ...description, at: now() });
  render();
}

function clearError() {
  state.errors = [];
}

/* ------------------------------------------------------------------------------------------------
 * Rendering: the whole page is redrawn from `state` after every change (text only, never HTML
 * built from messages: a member's name or a chat line cannot inject markup).
 * --------------------------------------------------------------------------------------------- */

const CALL_STATE_TEXT = {
  new: 'calling…',
  trying: 'trying (the server relayed the call)',
  ringing: 'ringing',
  accepting: 'accepting…',
  proceeded: 'accepted, negotiating',
  offering: 'connecting',
  active: 'active',
  ended: 'ended',
};

function render() {
  const ready = state.connection === 'ready';
  const room = state.room;
  const call = state.call;
  const inCall = isInCall();

  const status = $('status');
  status.dataset.connection = state.connection;
  status.textContent = {
    disconnected: 'Disconnected',
    connecting: 'Connecting…',
    connected: 'Connected, saying hello…',
    ready: `Connected as ${state.dn || state.uid} (session ${state.sid})`,
  }[state.connection];

  const error = state.errors.at(-1);
  $('error').hidden = !error;
  $('error').textContent = error ? `Error${error.errorCode ? ` ${error.errorCode}` : ''}: ${error.errorDetails ?? 'unknown'}` : '';
  $('error').dataset.code = error?.errorCode ?? '';

  $('connect').disabled = state.connection !== 'disconnected';
  $('disconnect').disabled = state.connection === 'disconnected';
  for (const id of ['uid', 'dn', 'token']) $(id).disabled = state.connection !== 'disconnected';
  $('join').disabled = !ready || room !== null;
  $('leave').disabled = !ready || room === null;
  $('room').disabled = room !== null;

  $('room-info').textContent = room
    ? `In ${room.kind === 'muc' ? 'multi-user room' : 'P2P room'} ${room.rid} with ${room.members.length} other member(s)`
    : 'Not in a room';
  $('members').replaceChildren(
    ...(room?.members ?? []).map((m) => {
      const li = document.createElement('li');
      li.textContent = m.dn ? `${m.dn} (${m.uid})` : m.uid;
      li.dataset.uid = m.uid;
      return li;
    }),
  );

  const callState = call ? call.state : 'idle';
  $('call-state').dataset.state = callState;
  $('call-state').textContent = !call
    ? 'idle'
    : call.state === 'ended'
      ? `ended (${call.endReason})`
      : `${call.direction === 'incoming' ? 'incoming from' : 'outgoing to'} ${call.peerName}: ${CALL_STATE_TEXT[call.state]}`;
  $('remote-caption').textContent = call ? call.peerName : 'Remote';
  $('call').disabled = !ready || room?.kind !== 'p2p' || room.members.length === 0 || inCall;
  $('hangup').disabled = !inCall;
  const ringing = call?.direction === 'incoming' && call.state === 'ringing';
  $('accept').hidden = !ringing;
  $('decline').hidden = !ringing;

  $('chat-send').disabled = !ready || room === null;
  $('chat-log').replaceChildren(
    ...state.chat.map((m) => {
      const li = document.createElement('li');
      li.className = m.mine ? 'mine' : 'theirs';
      li.dataset.mid = m.mid;
      const who = document.createElement('b');
      who.textContent = `${m.from}: `;
      const receipts = document.createElement('span');
      receipts.className = 'receipts';
      receipts.textContent = m.receipts.includes('received') ? ' ✓✓' : m.receipts.includes('server-received') ? ' ✓' : '';
      receipts.dataset.receipts = m.receipts.join(' ');
      li.append(who, m.content, receipts);
      return li;
    }),
  );
}

/** Keeps every envelope for the test and shows the latest in the page (SDPs shortened). */
function record(dir, envelope) {
  demo.log.push({ dir, envelope, at: now() });
  const li = document.createElement('li');
  li.className = dir;
  li.textContent = `${dir === 'out' ? '→' : '←'} ${JSON.stringify(envelope, (key, value) =>
    key === 'sdp' && typeof value === 'string' ? `${value.slice(0, 40)}… (${value.length} chars)` : value,
  )}`;
  const log = $('log');
  log.prepend(li);
  while (log.children.length > 200) log.lastChild.remove();
}

/* ------------------------------------------------------------------------------------------------
 * Wiring
 * --------------------------------------------------------------------------------------------- */

$('connect-form').addEventListener('submit', (event) => {
  event.preventDefault();
  void connect();
});
$('disconnect').addEventListener('click', disconnect);
$('room-form').addEventListener('submit', (event) => {
  event.preventDefault();
  void join();
});
$('leave').addEventListener('click', () => void leave());
$('call').addEventListener('click', () => void startCall());
$('accept').addEventListener('click', () => void acceptCall());
$('decline').addEventListener('click', declineCall);
$('hangup').addEventListener('click', hangUp);
$('chat-form').addEventListener('submit', (event) => {
  event.preventDefault();
  sendText();
});
// Closing the page hangs up properly rather than leaving the peer to notice the departure.
window.addEventListener('pagehide', hangUp);

$('uid').value = params.get('uid') ?? '';
$('dn').value = params.get('dn') ?? '';
$('token').value = params.get('token') ?? '';
$('room').value = params.get('room') ?? '';
render();
if (params.get('autojoin') === '1' && $('uid').value) void connect();
