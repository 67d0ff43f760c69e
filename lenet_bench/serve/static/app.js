// The draw-a-digit page: draw on the pad, and the drawing is read while you draw (every
// READ_INTERVAL_MS during a stroke, at once when it ends). Every layer's output is drawn
// from its shape alone: a (C, H, W) map as C small grey images, anything else (a vector,
// C maps of 1x1) as a strip of grey cells, black the layer's lowest value and white its highest.
"use strict";

const READ_INTERVAL_MS = 150;
const INK_WIDTH = 18;
const MAP_SIZE = 56;     // pixels of a feature map on screen, about
const GAP = 4;           // between maps and rows of cells
const PLACEHOLDER = "#e9ecf1";
const ACCENT = "#d9480f";

const pad = document.getElementById("pad");
const inkContext = pad.getContext("2d");
const inputCanvas = document.getElementById("input");
const layersSection = document.getElementById("layers");
const panels = [];       // {layer, canvas, layout}
let model = null;

// ------------------------------------------------------------------ layout and drawing of panels

function product(values) {
  return values.reduce((a, b) => a * b, 1);
}

function isMap(shape) {
  return shape.length === 3 && shape[1] * shape[2] > 1;
}

function mapLayout(shape, width) {
  const [channels, height, mapWidth] = shape;
  const scale = Math.max(1, Math.floor(MAP_SIZE / Math.max(height, mapWidth)));
  const w = mapWidth * scale, h = height * scale;
  const fit = Math.max(1, Math.floor((width + GAP) / (w + GAP)));
  const rows = Math.ceil(channels / fit);
  const columns = Math.ceil(channels / rows);  // rows as even as they can be
  return {kind: "maps", count: channels, height, mapWidth, scale, w, h, columns, rows,
          width: columns * (w + GAP) - GAP, height_px: rows * (h + GAP) - GAP};
}

function stripLayout(shape, width, labelled) {
  const count = product(shape);
  const cell = Math.min(36, Math.max(5, Math.floor((width + 1) / count) - 1));
  const columns = Math.min(count, Math.floor((width + 1) / (cell + 1)));
  const rows = Math.ceil(count / columns);
  const cellHeight = rows === 1 ? Math.max(cell, 16) : cell;
  const labelHeight = labelled ? 16 : 0;
  return {kind: "strip", count, cell, cellHeight, columns, rows, labelled, labelHeight,
          width: columns * (cell + 1) - 1, height_px: rows * (cellHeight + GAP) - GAP + labelHeight};
}

function layoutFor(shape, width, labelled) {
  return isMap(shape) ? mapLayout(shape, width) : stripLayout(shape, width, labelled);
}

function sizeCanvas(canvas, layout) {
  canvas.width = layout.width;
  canvas.height = layout.height_px;
}

function drawPlaceholder(canvas, layout) {
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.fillStyle = PLACEHOLDER;
  forEachCell(layout, (x, y, w, h) => context.fillRect(x, y, w, h));
}

// Calls draw(x, y, w, h, index) for every map or cell of the layout.
function forEachCell(layout, draw) {
  for (let index = 0; index < layout.count; index++) {
    const column = index % layout.columns, row = Math.floor(index / layout.columns);
    if (layout.kind === "maps") {
      draw(column * (layout.w + GAP), row * (layout.h + GAP), layout.w, layout.h, index);
    } else {
      draw(column * (layout.cell + 1), row * (layout.cellHeight + GAP), layout.cell, layout.cellHeight, index);
    }
  }
}

function drawMaps(canvas, layout, pixels) {
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.imageSmoothingEnabled = false;
  const size = layout.height * layout.mapWidth;
  const tile = document.createElement("canvas");
  tile.width = layout.mapWidth;
  tile.height = layout.height;
  const tileContext = tile.getContext("2d");
  const image = tileContext.createImageData(layout.mapWidth, layout.height);
  forEachCell(layout, (x, y, w, h, index) => {
    for (let i = 0; i < size; i++) {
      const value = pixels[index * size + i];
      image.data.set([value, value, value, 255], 4 * i);
    }
    tileContext.putImageData(image, 0, 0);
    context.drawImage(tile, x, y, w, h);
  });
}

function drawStrip(canvas, layout, pixels, highlight) {
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  forEachCell(layout, (x, y, w, h, index) => {
    const value = pixels[index];
    context.fillStyle = `rgb(${value}, ${value}, ${value})`;
    context.fillRect(x, y, w, h);
    if (index === highlight) {
      context.strokeStyle = ACCENT;
      context.lineWidth = 2;
      context.strokeRect(x + 1, y + 1, w - 2, h - 2);
    }
    if (layout.labelled) {
      context.fillStyle = index === highlight ? ACCENT : "#5d6678";
      context.font = "11px system-ui, sans-serif";
      context.textAlign = "center";
      context.fillText(String(index), x + w / 2, y + h + 13);
    }
  });
}

function drawPanel(canvas, layout, pixels, highlight) {
  if (layout.kind === "maps") {
    drawMaps(canvas, layout, pixels);
  } else {
    drawStrip(canvas, layout, pixels, highlight);
  }
}

function number(value) {
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

function shapeText(shape) {
  return shape.join("×");
}

// ------------------------------------------------------------------ the model's panels

function buildPanels() {
  const width = Math.min(900, layersSection.clientWidth - 24);
  model.layers.forEach((layer, index) => {
    const section = document.createElement("div");
    section.className = "layer";
    section.dataset.layer = layer.name;
    const title = document.createElement("h3");
    const params = layer.params ? ` · ${layer.params.toLocaleString("en")} params` : "";
    title.innerHTML = `${layer.name} <span class="muted">${layer.kind} · ${shapeText(layer.shape)}${params}</span>` +
                      `<span class="range muted"></span>`;
    const canvas = document.createElement("canvas");
    canvas.setAttribute("aria-label", `activations of ${layer.name}`);
    const last = index === model.layers.length - 1;
    const layout = layoutFor(layer.shape, width, last && product(layer.shape) <= 20);
    sizeCanvas(canvas, layout);
    drawPlaceholder(canvas, layout);
    section.append(title, canvas);
    layersSection.append(section);
    panels.push({layer, canvas, layout, section});
  });
}

function describeModel() {
  const params = model.params.toLocaleString("en");
  document.getElementById("model").textContent =
    `${model.run} · ${model.backend} · ${model.architecture} · input ${shapeText(model.input_shape)} · ` +
    `${params} params · ${model.mflops.toFixed(2)} MFLOPs`;
}

// ------------------------------------------------------------------ a reading

function showProbabilities(probabilities, top) {
  const box = document.getElementById("probabilities");
  box.replaceChildren();
  probabilities.forEach((p, label) => {
    const row = document.createElement("div");
    row.className = label === top ? "bar top" : "bar";
    row.innerHTML = `<span>${label}</span><span class="track"><span class="fill"></span></span>` +
                    `<span class="value">${(100 * p).toFixed(1)}%</span>`;
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    box.append(row);
  });
}

function showInput(panel) {
  const [, height, width] = panel.shape;
  const layout = {kind: "maps", count: 1, height, mapWidth: width, w: inputCanvas.width,
                  h: inputCanvas.height, columns: 1};
  drawMaps(inputCanvas, layout, panel.pixels);
}

function setMessage(text) {
  document.getElementById("message").textContent = text;
}

function reset(message) {
  inputCanvas.getContext("2d").clearRect(0, 0, inputCanvas.width, inputCanvas.height);
  document.getElementById("top-guess").textContent = "–";
  document.getElementById("top-probability").textContent = "";
  document.getElementById("second-guess").textContent = "";
  document.getElementById("probabilities").replaceChildren();
  panels.forEach(({canvas, layout, section}) => {
    drawPlaceholder(canvas, layout);
    delete section.dataset.rendered;
    section.querySelector(".range").textContent = "";
  });
  setMessage(message);
}

function show(reading) {
  if (!reading.digit_found) {
    reset("No digit found yet: draw one.");
    return;
  }
  const [first, second] = reading.top;
  document.getElementById("top-guess").textContent = String(first.label);
  document.getElementById("top-probability").textContent = `p = ${first.probability.toFixed(3)}`;
  document.getElementById("second-guess").textContent =
    second ? `then ${second.label} (p = ${second.probability.toFixed(3)})` : "";
  showInput(reading.input);
  showProbabilities(reading.probabilities, first.label);
  reading.layers.forEach((output, index) => {
    const {canvas, layout, section} = panels[index];
    const last = index === panels.length - 1;
    drawPanel(canvas, layout, output.pixels, last ? first.label : -1);
    section.dataset.rendered = "true";
    section.querySelector(".range").textContent = `black ${number(output.min)} … white ${number(output.max)}`;
  });
  setMessage("");
}

// ------------------------------------------------------------------ reading while drawing

let timer = null, inFlight = false, again = false, generation = 0, readings = 0;

function markPending() {
  document.body.dataset.pending = String(Boolean(timer || inFlight || again));
}

function readSoon() {
  if (!timer) {
    timer = setTimeout(() => { timer = null; readNow(); }, READ_INTERVAL_MS);
  }
  markPending();
}

function readNow() {
  if (timer) {
    clearTimeout(timer);
    timer = null;
  }
  if (inFlight) {
    again = true;  // one more reading when this one is back: the drawing changed meanwhile
  } else {
    send();
  }
  markPending();
}

async function send() {
  inFlight = true;
  const sent = generation;
  markPending();
  try {
    const drawing = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    const answer = await fetch("api/read", {method: "POST", headers: {"Content-Type": "image/png"}, body: drawing});
    const reading = await answer.json();
    if (!answer.ok) {
      throw new Error(reading.detail || answer.statusText);
    }
    if (sent === generation) {
      show(reading);
      readings += 1;
      document.body.dataset.readings = String(readings);
    }
  } catch (error) {
    setMessage(`Could not read the drawing: ${error.message}`);
  } finally {
    inFlight = false;
    if (again) {
      again = false;
      send();
    }
    markPending();
  }
}

// ------------------------------------------------------------------ the pad

let last = null;

function clearPad() {
  inkContext.fillStyle = "#ffffff";
  inkContext.fillRect(0, 0, pad.width, pad.height);
}

function pointOf(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

function stroke(from, to) {
  inkContext.strokeStyle = "#000000";
  inkContext.lineWidth = INK_WIDTH;
  inkContext.lineCap = "round";
  inkContext.lineJoin = "round";
  inkContext.beginPath();
  inkContext.moveTo(...from);
  inkContext.lineTo(...to);
  inkContext.stroke();
}

pad.addEventListener("pointerdown", (event) => {
  pad.setPointerCapture(event.pointerId);
  last = pointOf(event);
  stroke(last, last);
  readSoon();
  event.preventDefault();
});

pad.addEventListener("pointermove", (event) => {
  if (!last) {
    return;
  }
  const points = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const point of points.length ? points : [event]) {
    const next = pointOf(point);
    stroke(last, next);
    last = next;
  }
  readSoon();
});

for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (last) {
      last = null;
      readNow();
    }
  });
}

document.getElementById("clear").addEventListener("click", () => {
  generation += 1;  // a reading still on its way belongs to the old drawing
  if (timer) {
    clearTimeout(timer);
    timer = null;
  }
  again = false;
  clearPad();
  reset("Draw a digit on the pad.");
  markPending();
});

// ------------------------------------------------------------------ start

async function start() {
  clearPad();
  try {
    const answer = await fetch("api/model");
    model = await answer.json();
  } catch (error) {
    setMessage(`Could not load the model's description: ${error.message}`);
    return;
  }
  describeModel();
  buildPanels();
  setMessage("Draw a digit on the pad.");
  document.body.dataset.ready = "true";
}

start();
