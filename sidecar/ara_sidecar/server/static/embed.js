// <ara-avatar>: Ara's talking avatar on any web page, served by the sidecar at /embed.js.
//
//   <script src="http://127.0.0.1:7870/embed.js"></script>
//   <ara-avatar id="ara" server="http://127.0.0.1:7870" persona="ara"></ara-avatar>
//   <script>
//     document.getElementById("ara").speak("Hello there. Nice to meet you.", { mode: "playful" });
//   </script>
//
// Attributes: server (the sidecar's URL; default: where this script came from), persona, mode
// (a mode or "auto"; default: the persona's), avatar (an avatar_id from GET /v1/avatars), token
// (only for a server started with --token: anyone who can read the page can read it).
// speak(text, {mode, userMessage, previousMode}) renders through the job API and plays from the
// first chunk (Media Source) while the rest renders; it returns a promise of the result
// (as POST /v1/render answers). cancel() stops the current render.
// Events (CustomEvent, `detail`): started {job_id}, chunk {index, count, url, start_s, ...},
// ended {result}, error {message}. A page of another origin must be listed in the sidecar's
// server.cors_origins; any other is refused by the browser and the server alike.
(() => {
  "use strict";
  if (customElements.get("ara-avatar")) return;
  const scriptOrigin = document.currentScript ? new URL(document.currentScript.src).origin : location.origin;

  class AraAvatar extends HTMLElement {
    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML = `<style>
          :host { display: inline-block; width: 320px; aspect-ratio: 1; }
          video { width: 100%; height: 100%; background: #000; border-radius: 8px; display: block; }
        </style><video playsinline preload="auto" part="video"></video>`;
      this.video = root.querySelector("video");
      this._session = null; // the live Media Source playback of the current reply
      this._job = null;
      this.video.addEventListener("ended", () => this._showWholeAfterLive());
    }

    get server() { return (this.getAttribute("server") || scriptOrigin).replace(/\/+$/, ""); }

    _headers(extra = {}) {
      const token = this.getAttribute("token");
      return token ? { ...extra, Authorization: "Bearer " + token } : extra;
    }

    _emit(name, detail) { this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true })); }

    async _fetch(path, options = {}) {
      let response;
      try {
        response = await fetch(this.server + path, { ...options, headers: this._headers(options.headers) });
      } catch (exc) {
        throw new Error(`cannot reach the Ara sidecar at ${this.server} (is this page's origin in its ` +
          `server.cors_origins?): ${exc.message}`);
      }
      if (!response.ok) {
        let message = `${response.status} ${response.statusText}`;
        try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
        throw new Error(message);
      }
      return response;
    }

    /** Say `text`; resolves to the whole video's result once it is rendered. */
    async speak(text, options = {}) {
      this.cancel();
      const body = { text };
      const persona = this.getAttribute("persona"), avatar = this.getAttribute("avatar");
      const mode = options.mode || this.getAttribute("mode");
      if (persona) body.persona = persona;
      if (mode) body.mode = mode;
      if (avatar) body.avatar_id = avatar;
      if (options.userMessage) body.user_message = options.userMessage;
      if (options.previousMode) body.previous_mode = options.previousMode;
      try {
        const response = await this._fetch("/v1/jobs", {
          method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
        });
        const { job_id } = await response.json();
        this._job = job_id;
        this._emit("started", { job_id });
        const job = await this._follow(job_id);
        if (this._job !== job_id) throw new Error("cancelled");
        if (job.status !== "done") throw new Error(job.error || `the render ended ${job.status}`);
        this._job = null;
        await this._end(job.result);
        this._emit("ended", { result: job.result });
        return job.result;
      } catch (exc) {
        this._emit("error", { message: exc.message });
        throw exc;
      }
    }

    /** Stop the current render (and its playback). */
    cancel() {
      const job = this._job;
      this._job = null;
      this._stopLive();
      if (job) this._fetch(`/v1/jobs/${job}`, { method: "DELETE" }).catch(() => {});
    }

    // The job's Server-Sent Events, read with fetch (which can send a token); the final job.
    async _follow(jobId) {
      const response = await this._fetch(`/v1/jobs/${jobId}/events`, { headers: { Accept: "text/event-stream" } });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "", last = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this._job !== jobId) break;
        buffer += value;
        const blocks = buffer.split(/\r?\n\r?\n/);
        buffer = blocks.pop();
        for (const block of blocks) {
          const lines = block.split(/\r?\n/);
          const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
          if (!data) continue;
          const event = (lines.find((l) => l.startsWith("event:")) || "event: message").slice(6).trim();
          const message = JSON.parse(data);
          if (event === "chunk_ready") {
            this._emit("chunk", message);
            this._play(message);
          } else {
            last = message;
          }
        }
      }
      reader.cancel().catch(() => {});
      if (!last || ["queued", "running"].includes(last.status)) {
        last = await (await this._fetch(`/v1/jobs/${jobId}`)).json();
      }
      return last;
    }

    // Each chunk is a fragmented MP4 starting at 0, appended at its start_s.
    _play(chunk) {
      if (!this._session) {
        if (!window.MediaSource || !MediaSource.isTypeSupported(chunk.mime)) return;
        const source = new MediaSource();
        const session = { source, url: URL.createObjectURL(source), appended: 0, result: null };
        session.queue = new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }))
          .then(() => { session.buffer = source.addSourceBuffer(chunk.mime); session.buffer.mode = "segments"; });
        this._session = session;
        this.video.src = session.url;
      }
      const session = this._session;
      session.queue = session.queue.then(async () => {
        const data = await (await this._fetch(chunk.url)).arrayBuffer();
        if (this._session !== session) return;
        session.buffer.timestampOffset = chunk.start_s;
        await new Promise((resolve, reject) => {
          session.buffer.addEventListener("updateend", resolve, { once: true });
          session.buffer.addEventListener("error", () => reject(new Error("the browser rejected a chunk")), { once: true });
          session.buffer.appendBuffer(data);
        });
        session.appended += 1;
        if (session.appended === 1) {
          this.video.play().catch(() => { this.video.muted = true; this.video.play().catch(() => {}); });
        }
      });
      session.queue.catch(() => {}); // a failed chunk: the whole video still comes at the end
    }

    async _end(result) {
      const session = this._session;
      if (session) {
        try { await session.queue; } catch (_) { /* the whole video below */ }
        session.result = result;
        const playing = session.appended && !this.video.error && !(this.video.paused && this.video.currentTime === 0);
        if (playing && session.source.readyState === "open") { session.source.endOfStream(); return; }
      }
      await this._showWhole(result);
    }

    _showWholeAfterLive() {
      if (this._session && this._session.result) this._showWhole(this._session.result);
    }

    async _showWhole(result) {
      this._stopLive();
      let url = this.server + result.video_url;
      if (this.getAttribute("token")) url = URL.createObjectURL(await (await this._fetch(result.video_url)).blob());
      this.video.src = url;
      this.video.load();
    }

    _stopLive() {
      if (!this._session) return;
      URL.revokeObjectURL(this._session.url);
      this._session = null;
    }
  }

  customElements.define("ara-avatar", AraAvatar);
})();
