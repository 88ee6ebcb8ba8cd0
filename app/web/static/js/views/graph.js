// Draw a state machine's graph (app/workflows/graph.py: nodes and edges) as SVG, laid out by
// dagre. The layout is flat: a Parallel/Map state's branches hang off it by "branch" edges
// (dagre cannot route edges into compound nodes), their states keep their own names.

import dagre from "../../vendor/dagre.esm.js";

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const isMarker = (node) => node.type === "Start" || node.type === "End";
// A JSONata state says so under its type, as the Step Functions console does.
const kindText = (node, retried) =>
  node.type + (node.queryLanguage === "JSONata" ? " · JSONata" : "") + (retried ? " ↻" : "");

export function drawGraph(graph, title) {
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: "TB", nodesep: 24, ranksep: 36, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  const retries = new Set(graph.edges.filter((e) => e.from === e.to).map((e) => e.from));
  for (const node of graph.nodes) {
    const text = Math.max(node.label.length * 7.5, kindText(node, retries.has(node.id)).length * 6);
    const size = isMarker(node) ? { width: 18, height: 18 } : { width: Math.max(90, text + 28), height: 40 };
    g.setNode(node.id, { ...size, node });
  }
  graph.edges.forEach((edge, i) => {
    if (edge.from === edge.to) return; // retry loops are drawn as a badge on the node
    g.setEdge(edge.from, edge.to, { edge }, `e${i}`);
  });
  dagre.layout(g);

  const { width, height } = g.graph();
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "graph", role: "img", "aria-labelledby": "graph-title", width, height });
  svg.append(s("title", { id: "graph-title" }, title));
  svg.append(
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))),
  );
  for (const e of g.edges()) {
    const { points, edge } = g.edge(e);
    const d = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
    const path = s("path", { d, class: `edge edge-${edge.kind}`, "marker-end": "url(#arrow)" });
    if (edge.label) path.append(s("title", {}, `${edge.kind}: ${edge.label}`));
    svg.append(path);
  }
  const nodes = new Map();
  for (const id of g.nodes()) {
    const box = g.node(id);
    const node = box.node;
    const lang = node.queryLanguage === "JSONata" ? " lang-jsonata" : "";
    const group = s("g", { class: `node type-${node.type}${lang}`, "data-id": node.id, "data-state": node.label, transform: `translate(${box.x},${box.y})` });
    if (isMarker(node)) {
      group.append(s("circle", { r: 9 }), s("title", {}, node.type));
    } else {
      group.append(
        s("rect", { x: -box.width / 2, y: -box.height / 2, width: box.width, height: box.height, rx: 6 }),
        s("text", { "text-anchor": "middle", y: -2 }, node.label),
        s("text", { "text-anchor": "middle", y: 13, class: "kind" }, kindText(node, retries.has(node.id))),
        s("title", {}, `${node.label} (${kindText(node, false)})`),
      );
    }
    svg.append(group);
    const list = nodes.get(node.label) || [];
    list.push(group);
    nodes.set(node.label, list);
  }
  return { svg, nodes };
}

/**
 * The variables an execution has assigned so far, from its history: each *StateExited event's
 * `assignedVariables` (name → JSON text, as Step Functions records them), the latest assignment
 * of a name winning. A Map iteration's or Parallel branch's own variables are listed too, by
 * the state that assigned them.
 */
export function assignedVariables(events) {
  const variables = new Map(); // name → { value, state, truncated }
  for (const event of events) {
    const exited = event.details?.stateExitedEventDetails;
    if (!exited?.assignedVariables) continue;
    const truncated = Boolean(exited.assignedVariablesDetails?.truncated);
    for (const [name, text] of Object.entries(exited.assignedVariables)) {
      let value = text;
      try {
        value = JSON.parse(text);
      } catch {
        // a truncated value is not JSON any more: show its text
      }
      variables.set(name, { value, state: exited.name, truncated });
    }
  }
  return variables;
}

/** Mark each state entered/exited/failed, from the history events seen so far. */
export function stateProgress(events) {
  const progress = new Map(); // state name → "active" | "done" | "failed"
  let last = null;
  for (const event of events) {
    const details = event.details || {};
    if (event.type.endsWith("StateEntered")) {
      last = details.stateEnteredEventDetails?.name;
      if (last) progress.set(last, "active");
    } else if (event.type.endsWith("StateExited")) {
      const name = details.stateExitedEventDetails?.name;
      if (name) progress.set(name, "done");
    } else if (/(Failed|TimedOut|Aborted)$/.test(event.type) && last) {
      progress.set(last, "failed");
    }
  }
  return progress;
}
