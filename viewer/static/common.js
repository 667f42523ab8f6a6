// Helpers shared by the overview and episode pages (DOM building and uPlot set-ups).
"use strict";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"];

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

function fillTable(table, head, rows) {
  table.replaceChildren(el("thead", {}, el("tr", {}, ...head.map(h => el("th", {}, h)))),
    el("tbody", {}, ...rows.map(r => el("tr", {}, ...r.map(c => el("td", {}, c))))));
}

// uPlot plugin: vertical lines at x values, labelled (q01/q99, the current step).
function markLines(getMarks) {
  return {hooks: {draw: u => {
    const ctx = u.ctx;
    ctx.save();
    for (const [label, x, colour] of getMarks()) {
      const px = u.valToPos(x, "x", true);
      ctx.strokeStyle = colour; ctx.fillStyle = colour; ctx.lineWidth = 2 * devicePixelRatio;
      ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
      ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke();
      ctx.font = `${11 * devicePixelRatio}px sans-serif`;
      if (label) ctx.fillText(label, px + 3 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
    }
    ctx.restore();
  }}};
}

function histogram(target, title, hist, colour, width, height) {
  const marks = Object.entries(hist.marks || {}).map(([k, v]) => [k, v, "#d62728"]);
  const xs = hist.x.concat(marks.map(m => m[1]));
  return new uPlot({
    title, width, height, class: "hist", legend: {show: false}, cursor: {show: true, points: {show: false}},
    scales: {x: {time: false, range: () => { const lo = Math.min(...xs), hi = Math.max(...xs);
      const pad = hi > lo ? 0 : 1;   // one value only: widen so the bar shows
      return [lo - pad, hi + pad]; }}},
    axes: [{size: 30}, {size: 40}],
    series: [{}, {label: "count", fill: colour + "99", stroke: colour,
                  paths: uPlot.paths.bars({size: [0.9, 60]}), points: {show: false}}],
    plugins: [markLines(() => marks)],
  }, [hist.x, hist.y], target);
}

function fmt(v) {
  return v === null || v === undefined ? "—" : typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : v;
}
