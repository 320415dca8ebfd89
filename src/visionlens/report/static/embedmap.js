/* visionlens embedding map: a canvas scatter with pan, zoom and a hover card showing each
   point's thumbnail and label, made for a million points.

   Data come from <script> files that assign window.VL_MAPS[id] (so the page works from
   file://); every <div class="embedmap" data-map="id"> becomes a view. A map's data:
     n, xy (base64 little-endian float32, x y interleaved), group (base64 uint16 per point,
     65535 = none) with groups (their names), labels (one string per point, or absent),
     thumbs (one image URL per point, or absent) or atlas {files, tile, cols, per}: sprite
     sheets of `per` thumbnails, `cols` to a row, point i in sheet i / per. An older
     {points: [{x, y, label, thumb, group}]} is read too.
   Drawing: the points are bucketed once into a grid (counting sort); a frame visits only the
   grid cells in view. Up to ARC_MAX visible points are drawn as circles, more as pixels
   written straight into an ImageData (level of detail). The hovered point is drawn on a
   second canvas, so hovering never redraws the points. Sheets load when a point of theirs is
   first hovered: one request per sheet, never one per point, and none beyond the files the
   data names. */
(function () {
  "use strict";
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#7b4173", "#3182bd", "#e6550d"];
  var NONE = 65535; // no group
  var PLAIN = "#1f6fb2"; // points without a group
  var HIT = 9; // px: how close the pointer must be to a point
  var ARC_MAX = 20000; // at most this many visible points are drawn as circles, more as pixels
  var LOD_MAX = 250000; // while panning or zooming, at most this many (a uniform sample), all once still
  var SETTLE = 160; // ms without input before the full frame

  function decode(text, Type) {
    var bin = atob(text), n = bin.length, bytes = new Uint8Array(n);
    for (var i = 0; i < n; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }

  function rgba(hex) { // "#rrggbb" -> the uint32 of an opaque ImageData pixel (little-endian)
    var v = parseInt(hex.slice(1), 16);
    return ((255 << 24) | ((v & 255) << 16) | (v & 0xff00) | ((v >> 16) & 255)) >>> 0;
  }

  /* the arrays of a map's data, from the compact form or from a list of point objects */
  function columns(data) {
    if (data.xy !== undefined) {
      return {
        n: data.n, xy: decode(data.xy, Float32Array),
        group: data.group ? decode(data.group, Uint16Array) : null, groups: data.groups || [],
        labels: data.labels || null, thumbs: data.thumbs || null, atlas: data.atlas || null
      };
    }
    var pts = data.points || [], n = pts.length, xy = new Float32Array(2 * n), group = new Uint16Array(n);
    var names = [], index = {}, any = false;
    pts.forEach(function (p, i) {
      xy[2 * i] = p.x; xy[2 * i + 1] = p.y;
      group[i] = NONE;
      if (p.group !== undefined && p.group !== null) {
        if (!(p.group in index)) { index[p.group] = names.length; names.push(String(p.group)); }
        group[i] = index[p.group]; any = true;
      }
    });
    return {
      n: n, xy: xy, group: any ? group : null, groups: names,
      labels: pts.map(function (p) { return p.label || ""; }),
      thumbs: pts.some(function (p) { return p.thumb; }) ? pts.map(function (p) { return p.thumb || null; }) : null,
      atlas: null
    };
  }

  function View(el, data) {
    var self = this, c = columns(data), n = c.n, i;
    this.el = el;
    this.data = data;
    this.n = n; this.xy = c.xy; this.group = c.group; this.groups = c.groups;
    this.labels = c.labels; this.thumbs = c.thumbs; this.atlas = c.atlas;
    this.hovered = -1;
    this.k = 1; this.tx = 0; this.ty = 0;
    this.kMax = Math.max(64, Math.sqrt(n) / 4); // a million points: zoom far enough to part them
    this.frameTimes = []; // ms per drawn frame, the last 240
    this.frameMs = 0;
    this.drawnPoints = 0; this.mode = "";
    this.canvas = document.createElement("canvas");
    this.over = document.createElement("canvas"); // the hovered point, above the points
    this.over.style.cssText = "position:absolute;left:0;top:0;pointer-events:none";
    el.appendChild(this.canvas);
    el.appendChild(this.over);
    this.tip = document.createElement("div");
    this.tip.className = "vl-tip";
    this.tipBox = null; // made on the first hover over a point with a thumbnail: no empty <img>
    this.tipImg = null;
    this.tipText = document.createElement("div");
    this.tip.appendChild(this.tipText);
    el.appendChild(this.tip);
    // colours: the palette by group number; pixels as uint32 for the ImageData writes
    this.css = this.groups.map(function (_, g) { return PALETTE[g % PALETTE.length]; });
    this.px = new Uint32Array(this.groups.length + 1);
    this.css.forEach(function (h, g) { self.px[g] = rgba(h); });
    this.px[this.groups.length] = rgba(PLAIN);
    if (this.groups.length > 1 && this.groups.length <= 20) this.legend();
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity, xy = this.xy;
    for (i = 0; i < n; i++) {
      var x = xy[2 * i], y = xy[2 * i + 1];
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    if (!n) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
    this.x0 = x0; this.x1 = x1; this.y0 = y0; this.y1 = y1;
    this.index();
    this.bind();
    this.resize();
    if (window.ResizeObserver) new ResizeObserver(function () { self.resize(); }).observe(el);
  }

  /* the grid index: G x G cells over the data's bounds; order[start[c]..start[c+1]) are the
     points of cell c, in a shuffled order (so no class is always drawn last) */
  View.prototype.index = function () {
    var n = this.n, G = Math.max(1, Math.min(1024, Math.ceil(Math.sqrt(n / 4)))), xy = this.xy;
    var fx = G / ((this.x1 - this.x0) || 1), fy = G / ((this.y1 - this.y0) || 1);
    var cell = new Uint32Array(n), start = new Uint32Array(G * G + 1), order = new Uint32Array(n), i, j;
    for (i = 0; i < n; i++) {
      var cx = Math.min(G - 1, ((xy[2 * i] - this.x0) * fx) | 0), cy = Math.min(G - 1, ((xy[2 * i + 1] - this.y0) * fy) | 0);
      cell[i] = cy * G + cx;
      start[cell[i] + 1]++;
    }
    for (j = 0; j < G * G; j++) start[j + 1] += start[j];
    var fill = start.slice(0, G * G), perm = new Uint32Array(n), seed = 12345;
    for (i = 0; i < n; i++) perm[i] = i;
    for (i = n - 1; i > 0; i--) { // Fisher-Yates with a fixed LCG: the same picture every load
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      j = seed % (i + 1); var t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    for (j = 0; j < n; j++) { i = perm[j]; order[fill[cell[i]]++] = i; }
    // the coordinates and groups in grid order too: a frame reads memory in sequence
    var sxy = new Float32Array(2 * n), sg = new Uint16Array(n), group = this.group;
    for (j = 0; j < n; j++) {
      i = order[j]; sxy[2 * j] = xy[2 * i]; sxy[2 * j + 1] = xy[2 * i + 1];
      sg[j] = group ? group[i] : NONE;
    }
    this.G = G; this.fx = fx; this.fy = fy; this.start = start; this.order = order; this.sxy = sxy; this.sg = sg;
  };

  View.prototype.legend = function () {
    var box = document.createElement("div"), self = this, seen = {};
    box.className = "vl-legend";
    if (this.group) for (var i = 0; i < this.n; i++) seen[this.group[i]] = true;
    this.groups.forEach(function (g, j) {
      if (self.group && !seen[j]) return;
      var row = document.createElement("div"), dot = document.createElement("span");
      dot.style.background = self.css[j];
      row.appendChild(dot);
      row.appendChild(document.createTextNode(g));
      box.appendChild(row);
    });
    this.el.appendChild(box);
  };

  /* the affine map data -> canvas CSS pixels: X = a x + b, Y = c y + d (y up, with a margin) */
  View.prototype.affine = function () {
    var m = 18, w = this.w - 2 * m, h = this.h - 2 * m;
    var sx = w / ((this.x1 - this.x0) || 1), sy = h / ((this.y1 - this.y0) || 1), s = Math.min(sx, sy);
    var ox = m + (w - s * (this.x1 - this.x0)) / 2, oy = m + (h - s * (this.y1 - this.y0)) / 2;
    return {
      a: s * this.k, b: (ox - s * this.x0) * this.k + this.tx,
      c: -s * this.k, d: (this.h - oy + s * this.y0) * this.k + this.ty
    };
  };

  View.prototype.toCanvas = function (i) {
    var f = this.affine();
    return [f.a * this.xy[2 * i] + f.b, f.c * this.xy[2 * i + 1] + f.d];
  };

  /* viewport coordinates of point i (used by tests and by anyone scripting the page) */
  View.prototype.screenPoint = function (i) {
    var r = this.canvas.getBoundingClientRect(), c = this.toCanvas(i);
    return { x: r.left + c[0], y: r.top + c[1] };
  };

  View.prototype.resize = function () {
    var dpr = window.devicePixelRatio || 1;
    this.dpr = dpr;
    this.w = this.el.clientWidth || 600;
    this.h = this.el.clientHeight || 400;
    [this.canvas, this.over].forEach(function (cv) {
      cv.width = Math.round(this.w * dpr);
      cv.height = Math.round(this.h * dpr);
    }, this);
    this.over.style.width = this.w + "px";
    this.over.style.height = this.h + "px";
    this.ctx = this.canvas.getContext("2d");
    this.octx = this.over.getContext("2d");
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.draw();
  };

  /* the grid cells in view, [cx0, cx1] x [cy0, cy1], widened by `pad` CSS px */
  View.prototype.cells = function (f, pad) {
    var G = this.G, X0 = (-pad - f.b) / f.a, X1 = (this.w + pad - f.b) / f.a;
    var Y0 = (this.h + pad - f.d) / f.c, Y1 = (-pad - f.d) / f.c;
    function clamp(v) { return Math.max(0, Math.min(G - 1, Math.floor(v))); }
    return [clamp((X0 - this.x0) * this.fx), clamp((X1 - this.x0) * this.fx),
      clamp((Y0 - this.y0) * this.fy), clamp((Y1 - this.y0) * this.fy)];
  };

  /* draw at the next animation frame (events arrive faster than frames) */
  View.prototype.schedule = function (moving) {
    var self = this;
    if (moving) {
      this.moving = true;
      clearTimeout(this.settle);
      this.settle = setTimeout(function () { self.moving = false; self.schedule(); }, SETTLE);
    }
    if (this.pending) return;
    this.pending = window.requestAnimationFrame(function () { self.pending = 0; self.draw(); });
  };

  View.prototype.draw = function () {
    var t0 = performance.now(), f = this.affine(), n = this.n;
    var base = n < 100 ? 5 : n < 1000 ? 4 : 3, r = Math.max(2, Math.min(8, base * Math.sqrt(this.k)));
    var box = this.cells(f, r), G = this.G, start = this.start, visible = 0, cy;
    for (cy = box[2]; cy <= box[3]; cy++) visible += start[cy * G + box[1] + 1] - start[cy * G + box[0]];
    this.ctx.clearRect(0, 0, this.w, this.h);
    if (visible <= ARC_MAX) this.circles(f, box, r);
    else this.pixels(f, box, visible, this.moving && visible > LOD_MAX ? LOD_MAX / visible : 1);
    this.radius = this.mode === "circles" ? r : 2;
    this.drawHover();
    this.frameMs = performance.now() - t0;
    this.frameTimes.push(this.frameMs);
    if (this.frameTimes.length > 240) this.frameTimes.shift();
  };

  /* few points in view: circles, one path per colour */
  View.prototype.circles = function (f, box, r) {
    var c = this.ctx, G = this.G, start = this.start, sxy = this.sxy, sg = this.sg;
    var ng = this.groups.length, paths = [], drawn = 0, cy, j;
    for (var g = 0; g <= ng; g++) paths.push([]);
    for (cy = box[2]; cy <= box[3]; cy++) {
      for (j = start[cy * G + box[0]]; j < start[cy * G + box[1] + 1]; j++) {
        var X = f.a * sxy[2 * j] + f.b, Y = f.c * sxy[2 * j + 1] + f.d;
        if (X < -r || Y < -r || X > this.w + r || Y > this.h + r) continue;
        paths[sg[j] !== NONE ? sg[j] : ng].push(X, Y);
        drawn++;
      }
    }
    c.globalAlpha = 0.8;
    paths.forEach(function (p, g) {
      if (!p.length) return;
      c.fillStyle = g < ng ? this.css[g] : PLAIN;
      c.beginPath();
      for (var q = 0; q < p.length; q += 2) { c.moveTo(p[q] + r, p[q + 1]); c.arc(p[q], p[q + 1], r, 0, 2 * Math.PI); }
      c.fill();
    }, this);
    c.globalAlpha = 1;
    this.mode = "circles"; this.drawnPoints = drawn;
  };

  /* many points in view: 1-3 device pixels each, written into an ImageData; `frac` < 1 draws
     that fraction of each grid cell (its points are shuffled: a uniform sample) */
  View.prototype.pixels = function (f, box, visible, frac) {
    var dpr = this.dpr, W = this.canvas.width, H = this.canvas.height;
    if (!this.image || this.image.width !== W || this.image.height !== H) {
      this.image = this.ctx.createImageData(W, H);
      this.buf = new Uint32Array(this.image.data.buffer);
    }
    var buf = this.buf, G = this.G, start = this.start, sxy = this.sxy, sg = this.sg;
    var px = this.px, plain = px[this.groups.length], drawn = 0, cy, j;
    // density decides the size: sparse views get bigger dots
    var s = Math.max(1, Math.min(3, Math.round(Math.sqrt((W * H) / (visible * frac)) / 3)));
    var a = f.a * dpr, b = f.b * dpr - s / 2, c = f.c * dpr, d = f.d * dpr - s / 2, Wm = W - s, Hm = H - s;
    buf.fill(0);
    for (cy = box[2]; cy <= box[3]; cy++) {
      var lo = start[cy * G + box[0]], hi = start[cy * G + box[1] + 1];
      for (var cx = box[0]; frac < 1 && cx <= box[1]; cx++) { // the first frac of each cell
        var c0 = start[cy * G + cx], c1 = start[cy * G + cx + 1];
        drawn += this.run(buf, c0, c0 + Math.ceil((c1 - c0) * frac), a, b, c, d, Wm, Hm, W, s, sxy, sg, px, plain);
      }
      if (frac >= 1) drawn += this.run(buf, lo, hi, a, b, c, d, Wm, Hm, W, s, sxy, sg, px, plain);
    }
    this.ctx.putImageData(this.image, 0, 0);
    this.mode = "pixels"; this.drawnPoints = drawn;
  };

  /* points lo..hi of the grid order into the pixel buffer; returns how many fell in view */
  View.prototype.run = function (buf, lo, hi, a, b, c, d, Wm, Hm, W, s, sxy, sg, px, plain) {
    var drawn = 0;
    for (var j = lo; j < hi; j++) {
      var X = (a * sxy[2 * j] + b) | 0, Y = (c * sxy[2 * j + 1] + d) | 0;
      if (X < 0 || Y < 0 || X > Wm || Y > Hm) continue;
      var g = sg[j], col = g !== NONE ? px[g] : plain, o = Y * W + X;
      buf[o] = col;
      if (s > 1) {
        buf[o + 1] = col; buf[o + W] = col; buf[o + W + 1] = col;
        if (s > 2) { buf[o + 2] = col; buf[o + W + 2] = col; o += 2 * W; buf[o] = col; buf[o + 1] = col; buf[o + 2] = col; }
      }
      drawn++;
    }
    return drawn;
  };

  View.prototype.drawHover = function () {
    var c = this.octx;
    c.clearRect(0, 0, this.w, this.h);
    if (this.hovered < 0) return;
    var q = this.toCanvas(this.hovered), r = this.mode === "circles" ? this.radius : 3;
    c.fillStyle = "#f2a541"; c.strokeStyle = "#1d2733"; c.lineWidth = 2;
    c.beginPath(); c.arc(q[0], q[1], r + 3, 0, 2 * Math.PI); c.fill(); c.stroke();
  };

  /* the point nearest to canvas position (cx, cy) within HIT px, or -1: visits only the grid
     cells within HIT px */
  View.prototype.nearest = function (cx, cy) {
    var f = this.affine(), G = this.G, start = this.start, order = this.order, xy = this.xy;
    var x = (cx - f.b) / f.a, y = (cy - f.d) / f.c, rx = HIT / f.a, ry = HIT / -f.c;
    function clamp(v) { return Math.max(0, Math.min(G - 1, Math.floor(v))); }
    var gx0 = clamp((x - rx - this.x0) * this.fx), gx1 = clamp((x + rx - this.x0) * this.fx);
    var gy0 = clamp((y - ry - this.y0) * this.fy), gy1 = clamp((y + ry - this.y0) * this.fy);
    var best = -1, bd = HIT * HIT;
    for (var gy = gy0; gy <= gy1; gy++) {
      for (var j = start[gy * G + gx0]; j < start[gy * G + gx1 + 1]; j++) {
        var i = order[j], dx = f.a * xy[2 * i] + f.b - cx, dy = f.c * xy[2 * i + 1] + f.d - cy, dd = dx * dx + dy * dy;
        if (dd < bd || (dd === bd && i < best)) { bd = dd; best = i; }
      }
    }
    return best;
  };

  /* the thumbnail of point i in the hover card: its own file, or its tile of a sprite sheet */
  View.prototype.thumb = function (i) {
    var at = this.atlas, url = at ? at.files[Math.floor(i / at.per)] : this.thumbs ? this.thumbs[i] : null;
    if (!url) {
      if (this.tipBox) { this.tip.removeChild(this.tipBox); this.tipBox = this.tipImg = null; }
      return;
    }
    if (!this.tipBox) {
      this.tipBox = document.createElement("div");
      this.tipBox.className = "vl-thumb";
      this.tipImg = document.createElement("img");
      this.tipBox.appendChild(this.tipImg);
      this.tip.insertBefore(this.tipBox, this.tipText);
    }
    var img = this.tipImg;
    if (img.getAttribute("src") !== url) img.setAttribute("src", url);
    img.alt = this.labels ? this.labels[i] : "";
    if (!at) { img.removeAttribute("style"); return; }
    var side = this.tipBox.clientWidth || 128, scale = side / at.tile, j = i % at.per;
    var inSheet = Math.min(at.per, this.n - (i - j)), rows = Math.ceil(inSheet / at.cols);
    img.style.cssText = "position:absolute;max-width:none;margin:0;object-fit:fill;" +
      "width:" + at.cols * at.tile * scale + "px;height:" + rows * at.tile * scale + "px;" +
      "left:" + -(j % at.cols) * side + "px;top:" + -Math.floor(j / at.cols) * side + "px";
  };

  View.prototype.hover = function (i, cx, cy) {
    if (i !== this.hovered) { this.hovered = i; this.drawHover(); }
    if (i < 0) { this.tip.style.display = "none"; this.el.removeAttribute("data-hovered"); return; }
    this.el.setAttribute("data-hovered", String(i));
    this.tip.style.display = "block"; // first: the thumbnail's box measures itself
    this.thumb(i);
    this.tipText.textContent = (this.labels && this.labels[i]) || "point " + i;
    var tw = this.tip.offsetWidth, th = this.tip.offsetHeight;
    var x = cx + 14 + tw > this.w ? cx - 14 - tw : cx + 14;
    var y = Math.min(Math.max(0, cy - th / 2), Math.max(0, this.h - th));
    this.tip.style.left = x + "px";
    this.tip.style.top = y + "px";
  };

  View.prototype.bind = function () {
    var self = this, drag = null;
    function local(e) {
      var r = self.canvas.getBoundingClientRect();
      return [e.clientX - r.left, e.clientY - r.top];
    }
    this.canvas.addEventListener("pointerdown", function (e) {
      drag = { x: e.clientX, y: e.clientY, tx: self.tx, ty: self.ty };
      self.canvas.setPointerCapture(e.pointerId);
    });
    this.canvas.addEventListener("pointermove", function (e) {
      var q = local(e);
      if (drag) {
        self.tx = drag.tx + e.clientX - drag.x;
        self.ty = drag.ty + e.clientY - drag.y;
        self.hover(-1);
        self.schedule(true);
        return;
      }
      self.hover(self.nearest(q[0], q[1]), q[0], q[1]);
    });
    function end() { drag = null; }
    this.canvas.addEventListener("pointerup", end);
    this.canvas.addEventListener("pointercancel", end);
    this.canvas.addEventListener("pointerleave", function () { if (!drag) self.hover(-1); });
    this.canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      var q = local(e), f = Math.exp(-e.deltaY * 0.0015), k = Math.min(self.kMax, Math.max(0.5, self.k * f));
      f = k / self.k;
      self.tx = q[0] - (q[0] - self.tx) * f;
      self.ty = q[1] - (q[1] - self.ty) * f;
      self.k = k;
      self.hover(-1);
      self.schedule(true);
    }, { passive: false });
    this.canvas.addEventListener("dblclick", function () {
      self.k = 1; self.tx = 0; self.ty = 0; self.schedule();
    });
  };

  function init() {
    var maps = window.VL_MAPS || {};
    window.VL_MAP_VIEWS = window.VL_MAP_VIEWS || {};
    var els = document.querySelectorAll(".embedmap[data-map]");
    Array.prototype.forEach.call(els, function (el) {
      var id = el.getAttribute("data-map");
      if (window.VL_MAP_VIEWS[id]) return;
      if (!maps[id]) {
        el.textContent = "map data " + id + " did not load";
        console.error("visionlens: no data for embedding map " + id);
        return;
      }
      window.VL_MAP_VIEWS[id] = new View(el, maps[id]);
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
