/* visionlens explorer: plain JS, no library. One job at a time per page: a new one cancels the
   one this page was waiting for. Every request goes to this server only. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var state = { info: null, image: null, job: null, poll: null, explained: null };

  function showError(message) {
    var el = $("error");
    el.textContent = message || "";
    el.hidden = !message;
  }

  function api(method, url, body, type) {
    var init = { method: method, headers: {} };
    if (body !== undefined) {
      init.body = body;
      init.headers["Content-Type"] = type || "application/json";
    }
    return fetch(url, init).then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!r.ok) throw new Error((data && data.error) || ("HTTP " + r.status));
        return data;
      });
    });
  }

  function file(name) { return "/api/files/" + encodeURIComponent(name); }

  /* ---------------------------------------------------------------- start */

  function option(select, value, text) {
    var o = document.createElement("option");
    o.value = value; o.textContent = text;
    select.appendChild(o);
  }

  function init(info) {
    state.info = info;
    $("model").textContent = info.model + " · input " + info.input_size + " px" +
      (info.dataset ? " · dataset " + info.dataset.name + " (" + info.dataset.images + " images)" : " · no dataset");
    info.layers.forEach(function (l) { option($("layer"), l.name, l.name + " (" + l.units + " units)"); });
    $("layer").value = info.default_layer;
    info.methods.forEach(function (m) { option($("method"), m, m); });
    $("method").value = info.methods.indexOf("gradcam") >= 0 ? "gradcam" : info.methods[0];
    var list = $("classes");
    info.classes.forEach(function (c) { var o = document.createElement("option"); o.value = c; list.appendChild(o); });
    info.samples.forEach(function (s) { option($("sample"), s, s); });
    $("no-dataset").hidden = !!info.dataset;
    $("nb-controls").hidden = !info.dataset;
    $("patches-note").hidden = !info.dataset;
  }

  /* ---------------------------------------------------------------- the image */

  function useImage(id) {
    state.image = id;
    var img = $("preview");
    img.src = "/api/images/" + encodeURIComponent(id) + "/view.png";
    img.alt = "the chosen image";
    img.hidden = false;
    $("explain").disabled = false;
    $("search").disabled = !(state.info && state.info.dataset);
    $("result").hidden = true; $("unit").hidden = true;
    $("nb-grid").textContent = "";
  }

  function upload(f) {
    if (!f) return;
    showError("");
    $("drop-text").firstChild.textContent = "Uploading " + f.name + "… ";
    api("POST", "/api/images", f, f.type || "application/octet-stream").then(function (r) {
      $("drop-text").firstChild.textContent = f.name + " · drop another, or ";
      $("sample").value = "";
      useImage(r.id);
    }).catch(function (e) {
      $("drop-text").firstChild.textContent = "Drop an image here, or ";
      showError(e.message);
    });
  }

  var drop = $("drop");
  ["dragenter", "dragover"].forEach(function (t) {
    drop.addEventListener(t, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (t) {
    drop.addEventListener(t, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) { upload(e.dataTransfer.files[0]); });
  $("file").addEventListener("change", function (e) { upload(e.target.files[0]); e.target.value = ""; });
  $("sample").addEventListener("change", function (e) { if (e.target.value) useImage("sample:" + e.target.value); });

  /* ---------------------------------------------------------------- jobs */

  function progress(job) {
    $("status").hidden = false;
    var fill = $("bar-fill");
    if (job.total > 0) {
      fill.classList.remove("indeterminate");
      fill.style.width = Math.round(100 * job.done / job.total) + "%";
    } else {
      fill.classList.add("indeterminate");
      fill.style.width = "";
    }
    var text = job.status === "queued" ? "queued" + (job.ahead ? " (" + job.ahead + " ahead)" : "") : job.stage;
    if (job.total > 0) text += " · " + job.done + "/" + job.total;
    if (job.passes) text += " · " + job.passes + " forward passes";
    $("stage").textContent = text + " · " + job.seconds.toFixed(1) + " s";
    $("cancel").disabled = job.status !== "queued" && job.status !== "running";
  }

  function run(params, done) {
    if (state.job) api("POST", "/api/jobs/" + state.job + "/cancel").catch(function () {});
    clearTimeout(state.poll);
    showError("");
    var mine;
    function follow(job) {
      if (mine !== undefined && state.job !== mine) return; // another job took over
      mine = state.job = job.id;
      progress(job);
      if (job.status === "done") {
        state.job = null;
        $("status").hidden = true;
        done(job.result);
      } else if (job.status === "failed" || job.status === "cancelled") {
        state.job = null;
        $("status").hidden = true;
        if (job.status === "failed") showError(job.error);
        else showError("cancelled");
      } else {
        state.poll = setTimeout(function () {
          api("GET", "/api/jobs/" + job.id).then(follow).catch(function (e) { state.job = null; showError(e.message); });
        }, 200);
      }
    }
    return api("POST", "/api/jobs", JSON.stringify(params)).then(follow).catch(function (e) {
      $("status").hidden = true;
      showError(e.message);
    });
  }

  $("cancel").addEventListener("click", function () {
    if (state.job) api("POST", "/api/jobs/" + state.job + "/cancel").catch(function (e) { showError(e.message); });
  });

  /* ---------------------------------------------------------------- the map */

  function curves(r) {
    var svg = $("curves"), w = 240, h = 180, m = 10, ns = "http://www.w3.org/2000/svg";
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var top = Math.max.apply(null, r.deletion.scores.concat(r.insertion.scores, [1e-9]));
    var frame = document.createElementNS(ns, "rect");
    [["x", m], ["y", m], ["width", w - 2 * m], ["height", h - 2 * m], ["fill", "#fff"], ["stroke", "#c9d1da"]]
      .forEach(function (a) { frame.setAttribute(a[0], a[1]); });
    svg.appendChild(frame);
    [[r.deletion.scores, "#d73027"], [r.insertion.scores, "#3b6ea5"]].forEach(function (c) {
      var line = document.createElementNS(ns, "polyline");
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", c[1]);
      line.setAttribute("stroke-width", "2");
      line.setAttribute("points", c[0].map(function (s, i) {
        return (m + r.fractions[i] * (w - 2 * m)).toFixed(1) + "," + (h - m - Math.max(0, s) / top * (h - 2 * m)).toFixed(1);
      }).join(" "));
      svg.appendChild(line);
    });
  }

  function showMap(r) {
    $("result").hidden = false;
    $("view").src = "/api/images/" + encodeURIComponent(state.image) + "/view.png";
    $("overlay").src = file(r.files.overlay);
    $("overlay-caption").textContent = r.method + (r.cam_layer ? " at " + r.cam_layer : "") + " · explains " + r.target;
    curves(r);
    $("numbers").textContent = "deletion AUC " + r.deletion.auc.toFixed(3) + " (lower: more faithful) · insertion AUC " +
      r.insertion.auc.toFixed(3) + " (higher: more faithful)";
    $("top").textContent = "top-5: " + r.top.map(function (t) { return t.label + " " + (100 * t.p).toFixed(1) + "%"; }).join(", ");
    $("units-title").textContent = "Units of " + r.layer;
    var box = $("units");
    box.textContent = "";
    r.units.forEach(function (u) {
      var b = document.createElement("button");
      b.className = "unit";
      b.setAttribute("data-unit", u.unit);
      b.setAttribute("data-contribution", u.contribution);
      var img = document.createElement("img");
      img.src = file(u.file);
      img.alt = "unit " + u.unit;
      b.appendChild(img);
      b.appendChild(document.createTextNode(String(u.unit)));
      b.addEventListener("mouseenter", function (e) { tip(b, u, r.layer); });
      b.addEventListener("mouseleave", function () { $("unit-tip").hidden = true; });
      b.addEventListener("click", function () { openUnit(r.layer, u.unit, b); });
      box.appendChild(b);
    });
    state.explained = r;
  }

  function tip(b, u, layer) {
    var t = $("unit-tip"), rect = b.getBoundingClientRect();
    t.textContent = layer + " unit " + u.unit + " · adds " + u.contribution.toPrecision(3) + " to the Grad-CAM map";
    t.hidden = false;
    t.style.left = Math.round(rect.left) + "px";
    t.style.top = Math.round(rect.bottom + 6) + "px";
  }

  $("explain").addEventListener("click", function () {
    if (!state.image) return;
    run({
      kind: "explain", image: state.image, layer: $("layer").value, method: $("method").value,
      target: $("target").value.trim(), versus: $("versus").value.trim()
    }, showMap);
  });

  /* ---------------------------------------------------------------- a unit */

  function openUnit(layer, unit, button) {
    Array.prototype.forEach.call(document.querySelectorAll(".unit.active"), function (b) { b.classList.remove("active"); });
    if (button) button.classList.add("active");
    run({ kind: "unit", layer: layer, unit: unit }, function (r) {
      $("unit").hidden = false;
      $("unit-title").textContent = "Unit " + r.unit + " of " + r.layer;
      $("vis").src = file(r.vis);
      $("vis-caption").textContent = "feature visualization, " + r.steps + " steps";
      var box = $("patches");
      box.textContent = "";
      r.patches.forEach(function (p) {
        var f = document.createElement("figure"), img = document.createElement("img"), c = document.createElement("figcaption");
        img.src = file(p.file); img.alt = p.label;
        c.textContent = p.label + " · " + p.value;
        f.appendChild(img); f.appendChild(c); box.appendChild(f);
      });
    });
  }

  /* ---------------------------------------------------------------- neighbours */

  $("search").addEventListener("click", function () {
    if (!state.image) return;
    run({ kind: "neighbors", image: state.image, layer: $("layer").value, k: parseInt($("k").value, 10) || 8 }, function (r) {
      var box = $("nb-grid");
      box.textContent = "";
      r.neighbors.forEach(function (n) {
        var f = document.createElement("figure"), img = document.createElement("img"), c = document.createElement("figcaption");
        f.className = "neighbor";
        img.src = file(n.file); img.alt = n.name;
        c.textContent = (n.label ? n.label + " · " : "") + n.name + " · " + n.distance.toFixed(3);
        f.appendChild(img); f.appendChild(c); box.appendChild(f);
      });
    });
  });

  api("GET", "/api/info").then(init).catch(function (e) { showError("cannot reach the server: " + e.message); });
})();
