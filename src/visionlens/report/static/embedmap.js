/* visionlens embedding map: a canvas scatter with pan, zoom and a hover card showing each
   point's thumbnail and label. Data come from <script> files that assign window.VL_MAPS[id]
   (so the page works from file://); every <div class="embedmap" data-map="id"> becomes a view.
   No network request beyond the thumbnails named in the data. */
(function () {
  "use strict";
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#7b4173", "#3182bd", "#e6550d"];
  var HIT = 9; // px: how close the pointer must be to a point

  function View(el, data) {
    var self = this;
    this.el = el;
    this.data = data;
    this.points = data.points || [];
    this.hovered = -1;
    this.k = 1; this.tx = 0; this.ty = 0;
    this.canvas = document.createElement("canvas");
    el.appendChild(this.canvas);
    this.tip = document.createElement("div");
    this.tip.className = "vl-tip";
    this.tipImg = null; // created on the first hover over a point with a thumbnail: no empty <img>
    this.tipText = document.createElement("div");
    this.tip.appendChild(this.tipText);
    el.appendChild(this.tip);
    this.colors = {};
    var groups = [];
    this.points.forEach(function (p) {
      if (p.group !== undefined && !(p.group in self.colors)) {
        self.colors[p.group] = PALETTE[groups.length % PALETTE.length];
        groups.push(p.group);
      }
    });
    if (groups.length > 1 && groups.length <= 20) this.legend(groups);
    var xs = this.points.map(function (p) { return p.x; });
    var ys = this.points.map(function (p) { return p.y; });
    function lo(a) { return a.reduce(function (m, v) { return Math.min(m, v); }, a.length ? Infinity : 0); }
    function hi(a) { return a.reduce(function (m, v) { return Math.max(m, v); }, a.length ? -Infinity : 1); }
    this.x0 = lo(xs); this.x1 = hi(xs); this.y0 = lo(ys); this.y1 = hi(ys);
    this.bind();
    this.resize();
    if (window.ResizeObserver) new ResizeObserver(function () { self.resize(); }).observe(el);
  }

  View.prototype.legend = function (groups) {
    var box = document.createElement("div");
    box.className = "vl-legend";
    var self = this;
    groups.forEach(function (g) {
      var row = document.createElement("div");
      var dot = document.createElement("span");
      dot.style.background = self.colors[g];
      row.appendChild(dot);
      row.appendChild(document.createTextNode(g));
      box.appendChild(row);
    });
    this.el.appendChild(box);
  };

  // data -> canvas CSS pixels at zoom 1, y up, with a margin
  View.prototype.base = function (p) {
    var m = 18, w = this.w - 2 * m, h = this.h - 2 * m;
    var sx = w / ((this.x1 - this.x0) || 1), sy = h / ((this.y1 - this.y0) || 1), s = Math.min(sx, sy);
    var ox = m + (w - s * (this.x1 - this.x0)) / 2, oy = m + (h - s * (this.y1 - this.y0)) / 2;
    return [ox + s * (p.x - this.x0), this.h - (oy + s * (p.y - this.y0))];
  };

  View.prototype.toCanvas = function (p) {
    var b = this.base(p);
    return [b[0] * this.k + this.tx, b[1] * this.k + this.ty];
  };

  /* viewport coordinates of point i (used by tests and by anyone scripting the page) */
  View.prototype.screenPoint = function (i) {
    var r = this.canvas.getBoundingClientRect(), c = this.toCanvas(this.points[i]);
    return { x: r.left + c[0], y: r.top + c[1] };
  };

  View.prototype.resize = function () {
    var dpr = window.devicePixelRatio || 1;
    this.w = this.el.clientWidth || 600;
    this.h = this.el.clientHeight || 400;
    this.canvas.width = Math.round(this.w * dpr);
    this.canvas.height = Math.round(this.h * dpr);
    this.ctx = this.canvas.getContext("2d");
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.draw();
  };

  View.prototype.draw = function () {
    var n = this.points.length, base = n < 100 ? 5 : n < 1000 ? 4 : 3;
    var c = this.ctx, self = this, r = Math.max(2, Math.min(8, base * Math.sqrt(this.k)));
    c.clearRect(0, 0, this.w, this.h);
    c.globalAlpha = 0.8;
    this.points.forEach(function (p, i) {
      if (i === self.hovered) return;
      var q = self.toCanvas(p);
      if (q[0] < -r || q[1] < -r || q[0] > self.w + r || q[1] > self.h + r) return;
      c.fillStyle = p.group !== undefined ? self.colors[p.group] : "#1f6fb2";
      c.beginPath(); c.arc(q[0], q[1], r, 0, 2 * Math.PI); c.fill();
    });
    c.globalAlpha = 1;
    if (this.hovered >= 0) {
      var q = this.toCanvas(this.points[this.hovered]);
      c.fillStyle = "#f2a541"; c.strokeStyle = "#1d2733"; c.lineWidth = 2;
      c.beginPath(); c.arc(q[0], q[1], r + 3, 0, 2 * Math.PI); c.fill(); c.stroke();
    }
  };

  View.prototype.nearest = function (cx, cy) {
    var best = -1, bd = HIT * HIT, self = this;
    this.points.forEach(function (p, i) {
      var q = self.toCanvas(p), d = (q[0] - cx) * (q[0] - cx) + (q[1] - cy) * (q[1] - cy);
      if (d <= bd) { bd = d; best = i; }
    });
    return best;
  };

  View.prototype.hover = function (i, cx, cy) {
    if (i !== this.hovered) { this.hovered = i; this.draw(); }
    if (i < 0) { this.tip.style.display = "none"; this.el.removeAttribute("data-hovered"); return; }
    var p = this.points[i];
    this.el.setAttribute("data-hovered", String(i));
    if (p.thumb) {
      if (!this.tipImg) {
        this.tipImg = document.createElement("img");
        this.tip.insertBefore(this.tipImg, this.tipText);
      }
      if (this.tipImg.getAttribute("src") !== p.thumb) this.tipImg.setAttribute("src", p.thumb);
      this.tipImg.alt = p.label || "";
    } else if (this.tipImg) {
      this.tip.removeChild(this.tipImg);
      this.tipImg = null;
    }
    this.tipText.textContent = p.label || "point " + i;
    this.tip.style.display = "block";
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
        self.draw();
        self.hover(-1);
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
      var q = local(e), f = Math.exp(-e.deltaY * 0.0015), k = Math.min(64, Math.max(0.5, self.k * f));
      f = k / self.k;
      self.tx = q[0] - (q[0] - self.tx) * f;
      self.ty = q[1] - (q[1] - self.ty) * f;
      self.k = k;
      self.hover(-1);
      self.draw();
    }, { passive: false });
    this.canvas.addEventListener("dblclick", function () {
      self.k = 1; self.tx = 0; self.ty = 0; self.draw();
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
