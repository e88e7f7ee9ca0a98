// The page of seq2seq.serve: posts the lines to /translate and draws a chosen hypothesis' attention as a
// heatmap (rows: output pieces, columns: source pieces, colored with viridis from 0 to 1), the picture that
// seq2seq/insight.py draws for TensorBoard. Required terms (semicolon-separated) go to every line as its
// constraints and are marked in the translations. Plain JavaScript, no build step, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;

// matplotlib's viridis at 0, 0.25, 0.5, 0.75 and 1, interpolated linearly in between
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function viridis(value) {
  const x = Math.min(Math.max(value, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const t = x - i;
  const rgb = VIRIDIS[i].map((c, k) => Math.round(c + t * (VIRIDIS[i + 1][k] - c)));
  return `rgb(${rgb.join(", ")})`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function loadInfo() {
  try {
    const response = await fetch("/info");
    info = await response.json();
  } catch (error) {
    $("model-info").textContent = `cannot read /info: ${error}`;
    return;
  }
  const m = info.model;
  const bleu = info.checkpoints.map((c) => c.test_bleu).find((b) => b);
  $("model-info").textContent =
    `${info.languages.source} → ${info.languages.target}: ${m.cell.toUpperCase()} ` +
    `${m.encoder_layers}+${m.decoder_layers} layers, hidden ${m.hidden_size}, attention ${m.attention}, ` +
    `${m.parameters >= 1e6 ? `${(m.parameters / 1e6).toFixed(1)}M` : m.parameters.toLocaleString("en")} parameters` +
    (m.models > 1 ? ` (an ensemble of ${m.models})` : "") +
    (bleu ? `; test BLEU ${bleu.beam} (beam ${bleu.beam_size}), greedy ${bleu.greedy}` : "");
  $("beam-size").max = info.limits.max_beam_size;
  $("nbest").max = info.limits.max_beam_size;
  $("beam-size").value = info.defaults.beam_size;
  $("attention").checked = info.features.attention;
  $("attention").disabled = !info.features.attention;
  updateNote();
}

function attentionWanted() {
  const beam = Number($("beam-size").value);
  return $("attention").checked && (beam === 1 || (info && info.features.attention_with_beam));
}

function updateNote() {
  let note = "";
  if (info && !info.features.attention) note = "This model has no attention: no heatmap.";
  else if ($("attention").checked && !attentionWanted()) note = "The heatmap needs beam size 1 (greedy) for now.";
  $("note").textContent = note;
}

async function translate() {
  if (!$("source").value.trim()) {
    showError("Type or paste a sentence to translate (one per line).");
    $("source").focus();
    return;
  }
  const lines = $("source").value.split("\n");
  if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop(); // a final newline ends the last line
  const nbest = Number($("nbest").value);
  if (nbest > Number($("beam-size").value)) {
    $("beam-size").value = nbest; // n hypotheses need a beam of at least n, as translate --nbest and the API do
    updateNote();
  }
  const body = {
    text: lines,
    beam_size: Number($("beam-size").value),
    nbest: nbest,
    attention: attentionWanted(),
  };
  const terms = requiredTerms();
  if (terms.length) body.constraints = lines.map((line) => (line.trim() ? terms : []));
  $("translate").disabled = true;
  showError("");
  try {
    const response = await fetch("/translate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const result = await response.json();
    if (!response.ok) {
      showError(result.error || `HTTP ${response.status}`);
      return;
    }
    render(lines, result);
  } catch (error) {
    showError(`the request failed: ${error}`);
  } finally {
    $("translate").disabled = false;
  }
}

function requiredTerms() {
  return $("terms").value.split(";").map((t) => t.trim()).filter((t) => t);
}

// `text` as nodes, each required term found on word boundaries wrapped in <mark class="term">
function marked(text, terms) {
  const node = element("span", "hyp-text");
  if (!terms.length) {
    node.textContent = text;
    return node;
  }
  const escaped = terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).sort((a, b) => b.length - a.length);
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}])(?:${escaped.join("|")})(?![\\p{L}\\p{N}])`, "gu");
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    node.append(text.slice(last, match.index), element("mark", "term", match[0]));
    last = match.index + match[0].length;
  }
  node.append(text.slice(last));
  return node;
}

function render(lines, result) {
  const terms = requiredTerms();
  const list = $("translations");
  list.replaceChildren();
  let first = null;
  result.translations.forEach((entry, i) => {
    const item = element("li");
    item.append(element("div", "source-line", lines[i]));
    if (!lines[i].trim()) {
      item.append(element("span", "note", "(empty line: empty translation)"));
      list.append(item);
      return;
    }
    entry.hypotheses.forEach((hyp) => {
      const row = element("span", "hypothesis");
      row.append(marked(hyp.text, terms), element("span", "score", `score ${hyp.score.toFixed(3)}`));
      if (hyp.attention && hyp.attention.output_pieces.length) {
        row.dataset.attention = "";
        row.addEventListener("click", () => select(row, hyp));
        first = first || [row, hyp];
      }
      item.append(row);
    });
    list.append(item);
  });
  $("output").hidden = false;
  $("attention-view").hidden = true;
  if (first) select(...first);
}

function select(row, hyp) {
  document.querySelectorAll(".hypothesis.selected").forEach((r) => r.classList.remove("selected"));
  row.classList.add("selected");
  drawHeatmap(hyp.attention);
  $("heatmap-caption").textContent = `“${hyp.text}”: one row per output piece, one column per source piece.`;
  $("attention-view").hidden = false;
}

function drawHeatmap(attention) {
  const table = $("heatmap");
  const head = element("thead");
  const header = element("tr");
  header.append(element("th", "axis", "output ╲ source"));
  attention.source_pieces.forEach((piece) => header.append(element("th", "", piece)));
  head.append(header);
  const body = element("tbody");
  attention.weights.forEach((weights, r) => {
    const tr = element("tr");
    tr.append(element("th", "", attention.output_pieces[r]));
    weights.forEach((w, c) => {
      const cell = element("td");
      cell.style.background = viridis(w);
      cell.title = `${attention.output_pieces[r]} → ${attention.source_pieces[c]}: ${w.toFixed(3)}`;
      tr.append(cell);
    });
    body.append(tr);
  });
  table.replaceChildren(head, body);
}

$("translate").addEventListener("click", translate);
$("source").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) translate();
});
$("beam-size").addEventListener("input", updateNote);
$("attention").addEventListener("change", updateNote);
loadInfo();
