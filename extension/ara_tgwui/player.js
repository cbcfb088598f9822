// Ara's progressive player for text-generation-webui (loaded through the extension's custom_js).
//
// While the extension waits for a reply's video, it writes a small manifest (live.json, served by
// TGWUI's file/ route) listing the reply's chunk videos as they become ready. This script polls
// it, puts a player at the top (or bottom) of the reply being answered, and plays the chunks one
// after another through Media Source Extensions, from the first chunk on, while the rest are
// still rendering. When the reply's HTML arrives with the whole video (in a block with the same
// id as the live player, so TGWUI's morphdom pairs the two wherever they are), the live player
// keeps playing (morphdom is told to leave it alone); once it has ended, it switches to the whole
// MP4 for replay, which is exactly what TGWUI's HTML holds. Without this script, or
// where Media Source is missing, the whole video simply appears when it is done.
(() => {
  "use strict";
  const CONFIG = window.__ARA_PLAYER__ || {};
  const MANIFEST = CONFIG.manifest;
  if (!MANIFEST || window.__araPlayerStarted) return;
  window.__araPlayerStarted = true;
  const BUSY_POLL_MS = 200;
  const IDLE_POLL_MS = 1500;
  const FRESH_MS = 120000; // a manifest older than this is from an earlier reply: never replayed
  const seen = new Set();

  // -- keep the live player through TGWUI's DOM updates ---------------------------------------
  function guardMorphdom() {
    const original = window.morphdom;
    if (typeof original !== "function" || original.__ara) return;
    const guarded = function (fromNode, toNode, options) {
      const opts = Object.assign({}, options);
      const before = opts.onBeforeElUpdated;
      opts.onBeforeElUpdated = function (fromEl, toEl) {
        if (fromEl.classList && fromEl.classList.contains("ara-live") && !fromEl.__araFinished) return false;
        return before ? before(fromEl, toEl) : true;
      };
      const discarded = opts.onBeforeNodeDiscarded;
      opts.onBeforeNodeDiscarded = function (node) {
        if (node.classList && node.classList.contains("ara-live") && !node.__araFinished) return false;
        return discarded ? discarded(node) : true;
      };
      return original(fromNode, toNode, opts);
    };
    guarded.__ara = true;
    window.morphdom = guarded;
  }

  // -- the manifest -----------------------------------------------------------------------------
  async function readManifest() {
    try {
      const response = await fetch(`${MANIFEST}?t=${Date.now()}`, { cache: "no-store" });
      return response.ok ? await response.json() : null;
    } catch (error) {
      return null;
    }
  }

  function busy() {
    const stop = document.getElementById("stop");
    return Boolean(stop && stop.offsetParent !== null);
  }

  async function poll() {
    guardMorphdom();
    const manifest = await readManifest();
    // a new reply, once its first chunk is there (which also tells the video's codecs)
    if (manifest && manifest.job && !seen.has(manifest.job) && manifest.chunks.length) {
      seen.add(manifest.job);
      if (Date.now() / 1000 - manifest.created < FRESH_MS / 1000 && !manifest.done) start(manifest);
    }
    setTimeout(poll, busy() || sessions.size ? BUSY_POLL_MS : IDLE_POLL_MS);
  }

  // -- one reply's live playback ----------------------------------------------------------------
  const sessions = new Map(); // job id -> session

  function replyBody() {
    const bodies = document.querySelectorAll("#chat .message-body");
    return bodies.length ? bodies[bodies.length - 1] : null;
  }

  function start(manifest) {
    const body = replyBody();
    if (!body) return;
    const box = document.createElement("div");
    box.className = "ara-avatar ara-live";
    box.id = manifest.element_id; // the reply's HTML gives its video block the same id: morphdom pairs them
    const video = document.createElement("video");
    video.className = "ara-avatar-video";
    video.controls = true;
    video.playsInline = true;
    video.dataset.araJob = manifest.job;
    box.appendChild(video);
    if (manifest.position === "after") body.appendChild(box);
    else body.insertBefore(box, body.firstChild);
    const session = { job: manifest.job, box, video, appended: 0, final: null, ended: false };
    sessions.set(manifest.job, session);
    video.addEventListener("ended", () => finish(session));
    if (window.MediaSource && MediaSource.isTypeSupported(manifest.mime || "")) playWithMediaSource(session, manifest);
    else playInTurn(session, manifest);
  }

  function finish(session) {
    if (session.ended) return;
    session.ended = true;
    session.box.__araFinished = true;
    sessions.delete(session.job);
    if (session.final) {
      // the whole video, exactly as the reply's HTML has it: the next DOM update changes nothing
      session.video.src = session.final;
      session.video.preload = "metadata";
    }
  }

  async function follow(session, onChunk) {
    // Hands each new chunk (in order) to onChunk; returns when the manifest says the job is over.
    let manifest = null;
    for (;;) {
      manifest = await readManifest();
      if (!manifest || manifest.job !== session.job) return null; // a newer reply took over
      while (session.appended < manifest.chunks.length) {
        await onChunk(manifest.chunks[session.appended]);
        session.appended += 1;
      }
      if (manifest.final) session.final = manifest.final;
      if (manifest.done) return manifest;
      await new Promise((resolve) => setTimeout(resolve, BUSY_POLL_MS));
    }
  }

  function playWithMediaSource(session, manifest) {
    const source = new MediaSource();
    session.video.src = URL.createObjectURL(source);
    source.addEventListener("sourceopen", async () => {
      const buffer = source.addSourceBuffer(manifest.mime);
      buffer.mode = "segments"; // every chunk starts at 0: placed by timestampOffset
      const appended = () => new Promise((resolve) => buffer.addEventListener("updateend", resolve, { once: true }));
      let started = false;
      const last = await follow(session, async (chunk) => {
        const data = await (await fetch(chunk.src)).arrayBuffer();
        buffer.timestampOffset = chunk.start_s;
        buffer.appendBuffer(data);
        await appended();
        if (!started) {
          started = true;
          session.video.play().catch(() => {
            session.video.muted = true; // autoplay with sound refused: start muted, as browsers allow
            session.video.play().catch(() => {});
          });
        }
      });
      if (last && source.readyState === "open") {
        if (last.failed) finish(session);
        else source.endOfStream();
      }
    });
  }

  function playInTurn(session, manifest) {
    // Without Media Source: the chunk files one after another in the same element.
    const queue = [];
    let playing = false;
    const next = () => {
      if (!queue.length) return (playing = false);
      playing = true;
      session.video.src = queue.shift();
      session.video.play().catch(() => {});
    };
    session.video.addEventListener("ended", (event) => {
      if (queue.length) {
        event.stopImmediatePropagation();
        next();
      }
    }, true);
    follow(session, async (chunk) => {
      queue.push(chunk.src);
      if (!playing) next();
    }).then((last) => {
      if (!last || last.failed) finish(session);
    });
  }

  poll();
})();
