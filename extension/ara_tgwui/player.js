// Ara's progressive player for text-generation-webui (loaded through the extension's custom_js).
//
// While a reply streams, the extension renders its complete sentences and lists each chunk video
// in a small manifest (live.json, served by TGWUI's file/ route); the final render continues the
// same manifest and ends it with the whole MP4. This script polls the manifest, puts one video at
// the top (or bottom) of the streaming bot message as soon as the first chunk is listed, and plays
// the chunks one after another through Media Source Extensions while TGWUI keeps re-rendering the
// message (its morphdom update is told to keep the live video in place, and to leave out an older
// Ara video of the same message, e.g. after Continue). When the whole MP4 is ready it takes over
// in the same element's place at the same position (preloaded off-page, swapped when the live
// video reaches the position it was seeked to); TGWUI's final HTML has a block with the same id,
// so morphdom pairs the two and only adds the mode badge. Without this script, or where Media
// Source is missing, the whole video appears when it is done.
//
// Autoplay: a reply's video carries data-ara-autoplay (when it was made); this script plays a
// fresh one once and remembers it (localStorage), so a page reload never replays a video.
(() => {
  "use strict";
  const CONFIG = window.__ARA_PLAYER__ || {};
  const MANIFEST = CONFIG.manifest;
  if (!MANIFEST || window.__araPlayerStarted) return;
  window.__araPlayerStarted = true;
  const BUSY_POLL_MS = 100;
  const IDLE_POLL_MS = 1000;
  const FRESH_S = 120; // a manifest or video older than this is from an earlier reply: never replayed
  const LEAD_S = 0.25; // the whole MP4 is seeked this far ahead of the live position, then swapped in
  const seen = new Set();
  const sessions = new Map(); // job id -> session

  // -- what has been played (a reload never replays) ---------------------------------------------
  const PLAYED_KEY = "ara-played";
  function played() {
    try {
      return JSON.parse(localStorage.getItem(PLAYED_KEY) || "[]");
    } catch (error) {
      return [];
    }
  }
  function markPlayed(id) {
    const list = played().filter((item) => item !== id);
    list.push(id);
    try {
      localStorage.setItem(PLAYED_KEY, JSON.stringify(list.slice(-200)));
    } catch (error) {
      /* private mode: this page only */
    }
  }

  function play(video) {
    video.play().catch(() => {
      video.muted = true; // autoplay with sound refused: start muted, as browsers allow
      video.play().catch(() => {});
    });
  }

  function autoplayFresh() {
    const done = new Set(played());
    for (const video of document.querySelectorAll("video.ara-avatar-video[data-ara-autoplay]")) {
      const box = video.closest(".ara-avatar");
      const id = box && box.id;
      if (!id || done.has(id) || (box.classList.contains("ara-live") && !box.__araFinished)) continue;
      markPlayed(id);
      done.add(id);
      if (Date.now() / 1000 - Number(video.dataset.araAutoplay) < FRESH_S && video.paused) play(video);
    }
  }

  // -- keep the live player through TGWUI's DOM updates ---------------------------------------
  function activeBox(node) {
    return node.classList && node.classList.contains("ara-live") && !node.__araFinished ? node : null;
  }

  function syncBlock(box, toEl) {
    // The reply's final block for the live player: take everything but the video (the badge).
    if (!toEl.classList || !toEl.classList.contains("ara-avatar") || toEl.id !== box.id) return;
    for (const child of Array.from(box.children)) if (child.tagName !== "VIDEO") child.remove();
    for (const child of toEl.children) if (child.tagName !== "VIDEO") box.appendChild(child.cloneNode(true));
    const video = toEl.querySelector("video");
    if (video) box.__araFinalSrc = video.getAttribute("src");
  }

  function guardMorphdom() {
    const original = window.morphdom;
    if (typeof original !== "function" || original.__ara) return;
    const guarded = function (fromNode, toNode, options) {
      const opts = Object.assign({}, options);
      const html = typeof toNode === "string" ? toNode : toNode && toNode.outerHTML ? toNode.outerHTML : "";
      const whole = Boolean(fromNode.querySelector && fromNode.querySelector(".messages")); // not one message
      // A live box survives an update of its own (streaming) message, or one whose HTML has its id.
      const keep = (box) => !whole || html.includes(`id="${box.id}"`);
      const live = Array.from(sessions.values()).filter((s) => !s.ended && fromNode.contains(s.box));
      const before = opts.onBeforeElUpdated;
      opts.onBeforeElUpdated = function (fromEl, toEl) {
        if (activeBox(fromEl)) {
          syncBlock(fromEl, toEl);
          return false;
        }
        return before ? before(fromEl, toEl) : true;
      };
      const discarded = opts.onBeforeNodeDiscarded;
      opts.onBeforeNodeDiscarded = function (node) {
        if (activeBox(node)) {
          if (keep(node)) return false;
          const session = sessions.get(node.__araJob);
          if (session) drop(session, false); // another chat or a redraw without it
        }
        return discarded ? discarded(node) : true;
      };
      const added = opts.onBeforeNodeAdded;
      opts.onBeforeNodeAdded = function (node) {
        // an older Ara video of the message being spoken (Continue): one video per message
        if (node.classList && node.classList.contains("ara-avatar") && !node.classList.contains("ara-avatar-note")) {
          if (live.some((s) => s.box.id !== node.id && s.message && fromNode.contains(s.message))) return false;
        }
        return added ? added(node) : node;
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
      return response.ok ? JSON.parse(await response.text()) : null;
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
    if (manifest && manifest.job && !seen.has(manifest.job)) {
      const fresh = Date.now() / 1000 - manifest.created < FRESH_S;
      if (manifest.done || !fresh) seen.add(manifest.job);
      else if (manifest.chunks.length) {
        seen.add(manifest.job); // a new reply, once its first chunk is there (which also tells the codecs)
        start(manifest);
      }
    }
    autoplayFresh();
    setTimeout(poll, busy() || sessions.size ? BUSY_POLL_MS : IDLE_POLL_MS);
  }

  // -- one reply's live playback ----------------------------------------------------------------
  function replyBody() {
    const bodies = document.querySelectorAll("#chat .message-body");
    return bodies.length ? bodies[bodies.length - 1] : null;
  }

  function start(manifest) {
    const body = replyBody();
    if (!body || document.getElementById(manifest.element_id)) {
      markPlayed(manifest.element_id); // the reply's whole video is already there: it autoplays
      return;
    }
    for (const session of sessions.values()) if (body.contains(session.box)) drop(session, true);
    for (const old of body.querySelectorAll(".ara-avatar")) if (!old.classList.contains("ara-avatar-note")) old.remove();
    const box = document.createElement("div");
    box.className = "ara-avatar ara-live";
    box.id = manifest.element_id; // the reply's HTML gives its video block the same id: morphdom pairs them
    box.__araJob = manifest.job;
    const video = document.createElement("video");
    video.className = "ara-avatar-video";
    video.controls = true;
    video.playsInline = true;
    video.dataset.araJob = manifest.job;
    box.appendChild(video);
    if (manifest.position === "after") body.appendChild(box);
    else body.insertBefore(box, body.firstChild);
    markPlayed(manifest.element_id);
    const message = body.closest(".message, .assistant-message") || body.parentNode;
    const session = { job: manifest.job, box, video, message, appended: 0, final: null, ended: false };
    sessions.set(manifest.job, session);
    if (window.MediaSource && MediaSource.isTypeSupported(manifest.mime || "")) {
      session.prefetched = fetch(manifest.chunks[0].src).then((r) => r.arrayBuffer()); // while the source opens
      playWithMediaSource(session, manifest);
    }
    else playInTurn(session, manifest);
  }

  function drop(session, remove) {
    // The reply was replaced (regenerate, another chat), cancelled or failed: no live video.
    if (session.ended) return;
    session.ended = true;
    session.box.__araFinished = true;
    sessions.delete(session.job);
    session.video.pause();
    if (remove) session.box.remove();
  }

  function settle(session, video) {
    session.ended = true;
    session.box.__araFinished = true;
    sessions.delete(session.job);
    session.video = video;
  }

  function finalVideo(session) {
    const video = document.createElement("video");
    video.className = "ara-avatar-video";
    video.controls = true;
    video.playsInline = true;
    video.preload = "auto";
    video.muted = session.video.muted;
    video.volume = session.video.volume;
    video.setAttribute("src", session.final);
    return video;
  }

  const once = (target, name, ms) =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      target.addEventListener(name, () => (clearTimeout(timer), resolve(true)), { once: true });
    });

  async function handover(session) {
    // The whole MP4 takes the live video's place at the live position, without a restart.
    const live = session.video;
    const whole = finalVideo(session);
    if (!(await once(whole, "loadeddata", 15000)) || session.ended) {
      if (!session.ended) live.addEventListener("ended", () => swapAtEnd(session), { once: true });
      return;
    }
    const running = () => !live.paused && !live.ended;
    for (let tries = 0; running() && tries < 5; tries += 1) {
      const target = Math.min(live.currentTime + LEAD_S, whole.duration);
      whole.currentTime = target;
      await once(whole, "seeked", 3000);
      if (Math.abs(whole.currentTime - target) > 0.1) break; // not seekable: see below
      if (live.currentTime > whole.currentTime) continue; // the seek took too long: again, further ahead
      while (running() && live.currentTime < whole.currentTime - 0.004) {
        await new Promise((resolve) => setTimeout(resolve, 4));
      }
      if (session.ended) return;
      if (running()) {
        const from = live.currentTime;
        whole.play().catch(() => {});
        live.replaceWith(whole);
        live.pause();
        window.__araHandover = { live: from, whole: whole.currentTime, job: session.job };
        settle(session, whole);
        return;
      }
    }
    if (session.ended) return;
    if (live.ended) return swapAtEnd(session);
    if (running()) return live.addEventListener("ended", () => swapAtEnd(session), { once: true });
    whole.currentTime = Math.min(live.currentTime, whole.duration); // paused: same place, paused
    await once(whole, "seeked", 3000);
    if (session.ended) return;
    if (Math.abs(whole.currentTime - live.currentTime) > 0.1) {
      // not seekable (a server without byte ranges): the whole MP4 takes over at the end
      live.addEventListener("ended", () => swapAtEnd(session), { once: true });
      return;
    }
    window.__araHandover = { live: live.currentTime, whole: whole.currentTime, job: session.job };
    live.replaceWith(whole);
    live.pause();
    settle(session, whole);
  }

  function swapAtEnd(session) {
    if (session.ended) return;
    const whole = finalVideo(session);
    whole.preload = "metadata";
    session.video.replaceWith(whole);
    settle(session, whole);
  }

  async function follow(session, onChunk, first) {
    // Hands each new chunk (in order) to onChunk; returns the last manifest once the reply is over,
    // null when a newer reply took over. `first`: the manifest just read.
    for (;;) {
      if (session.ended) return null;
      const manifest = first || (await readManifest());
      first = null;
      if (manifest && manifest.job !== session.job) return null;
      if (manifest) {
        while (session.appended < manifest.chunks.length) {
          await onChunk(manifest.chunks[session.appended]);
          session.appended += 1;
        }
        if (manifest.final) session.final = manifest.final;
        if (manifest.done) return manifest;
      }
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
        const data = await (session.prefetched || fetch(chunk.src).then((r) => r.arrayBuffer()));
        session.prefetched = null;
        buffer.timestampOffset = chunk.start_s;
        buffer.appendBuffer(data);
        await appended();
        if (!started) {
          started = true;
          play(session.video);
        }
      }, manifest);
      if (!last || last.failed || last.cancelled || !last.final) return drop(session, true);
      if (source.readyState === "open") source.endOfStream();
      handover(session);
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
      } else playing = false;
    }, true);
    follow(session, async (chunk) => {
      queue.push(chunk.src);
      if (!playing) next();
    }).then((last) => {
      if (!last || last.failed || last.cancelled || !last.final) return drop(session, true);
      const end = () => (playing || queue.length ? session.video.addEventListener("ended", end, { once: true }) : swapAtEnd(session));
      end();
    });
  }

  poll();
})();
