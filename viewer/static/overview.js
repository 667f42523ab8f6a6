// Overview page: counts, episode table, rejections, histograms, counters and stage options.
"use strict";
(function () {
  const D = DATA;
  document.getElementById("title").textContent = D.name;
  document.getElementById("path").textContent = D.output;
  document.title = D.name + " · armdata view";
  const c = D.counts;
  const ok = c.episodes_in === c.episodes_out + c.episodes_rejected && c.steps_in === c.steps_out + c.steps_rejected;
  const card = (label, a, b, r) => el("div", {className: "card"}, el("div", {className: "label"}, label),
    el("div", {className: "big"}, `${a} = ${b} + ${r}`), el("div", {className: "muted"}, "in = out + rejected"));
  document.getElementById("counts").append(
    card("episodes", c.episodes_in, c.episodes_out, c.episodes_rejected),
    card("steps", c.steps_in, c.steps_out, c.steps_rejected),
    el("div", {className: "card " + (ok ? "good" : "bad")}, el("div", {className: "label"}, "accounting"),
       el("div", {className: "big"}, ok ? "consistent" : "INCONSISTENT"),
       el("div", {className: "muted"}, "stages: " + D.stages.join(", "))));

  const link = id => D.pages[id] ? el("a", {href: D.pages[id]}, id) : el("span", {title: "page not rendered (armdata view --episode ID)"}, id);

  // Episode table: sortable by any column, filtered by text.
  const cols = [["episode", "id"], ["instruction", "instruction"], ["kept steps", "length"],
                ["rejected steps", "rejected_steps"], ["gripper visible", "visible_share"]];
  let sortKey = "id", sortDir = 1;
  const table = document.getElementById("episodes"), filter = document.getElementById("filter");
  function drawEpisodes() {
    const q = filter.value.trim().toLowerCase();
    const rows = D.episodes.filter(e => !q || (e.id + " " + (e.instruction || "") + " " + (e.rejected || "")).toLowerCase().includes(q));
    rows.sort((a, b) => (a[sortKey] ?? -1) < (b[sortKey] ?? -1) ? -sortDir : (a[sortKey] ?? -1) > (b[sortKey] ?? -1) ? sortDir : 0);
    const head = el("tr", {}, ...cols.map(([label, key]) => {
      const th = el("th", {className: key === sortKey ? (sortDir > 0 ? "asc" : "desc") : ""}, label);
      th.onclick = () => { sortDir = key === sortKey ? -sortDir : 1; sortKey = key; drawEpisodes(); };
      return th;
    }));
    const body = rows.slice(0, 2000).map(e => el("tr", {className: e.length ? "" : "rejected"},
      el("td", {}, link(e.id)), el("td", {}, e.instruction ?? (e.rejected ? "rejected: " + e.rejected : "—")),
      el("td", {className: "num"}, e.length), el("td", {className: "num"}, e.rejected_steps),
      el("td", {className: "num"}, e.visible_share === null ? "—" : (100 * e.visible_share).toFixed(0) + " %")));
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
    document.getElementById("shown").textContent = `${rows.length} of ${D.episodes.length} episodes` + (rows.length > 2000 ? " (first 2000 listed)" : "") + ` · ${Object.keys(D.pages).length} pages rendered`;
  }
  filter.oninput = drawEpisodes;
  drawEpisodes();

  fillTable(document.getElementById("rejections"), ["stage", "reason", "records", "steps", "episodes"],
    D.rejections.map(r => [r.stage, r.reason, r.records, r.steps,
      el("span", {}, ...r.episodes.slice(0, 20).flatMap((id, k) => [k ? ", " : "", link(id)]), r.episodes.length > 20 ? ` … +${r.episodes.length - 20}` : "")]));
  if (!D.rejections.length) document.getElementById("rejections").replaceWith(el("p", {className: "muted"}, "nothing rejected"));

  histogram(document.getElementById("lengths"), "", D.length_histogram, PALETTE[0], 640, 200);
  for (const [column, colour] of [["action", PALETTE[0]], ["action_normalized", PALETTE[1]]]) {
    const grid = el("div", {className: "grid"});
    document.getElementById("actions").append(el("h3", {}, column), grid);
    (D.action_histograms[column] || []).forEach((h, d) => histogram(grid, `[${d}]`, h, colour, 185, 140));
  }
  fillTable(document.getElementById("counters"), ["counter", "value"],
    D.derived.map(([k, v]) => [el("b", {}, k), el("b", {}, v)]).concat(Object.entries(D.counters)));
  document.getElementById("options").textContent = JSON.stringify(D.stage_options, null, 2);
})();
