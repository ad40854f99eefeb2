// The Measurements panel: a series' spine measurements as HOPE's measurement report (a DICOM SR) holds them,
// answered by GET /hope/measurements/{series_uid}. Tables carry the numbers; an inline SVG plots canal and cord.
import { el, fillTable, fmt } from "/console/api.js";

/** The states of a series whose saved label has a measurement report. */
export const REPORTED_STATES = ["submitted", "approved", "final"];

const SVG = "http://www.w3.org/2000/svg";
const CHART = { top: 12, bottom: 176, left: 52, group: 46, bar: 17 };

/** A new SVG element with attributes and children (nodes or text). */
function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

/** A fraction (0..1) as a percentage with one decimal, or a dash. */
function percent(fraction) {
  return fmt(fraction === null || fraction === undefined ? null : 100 * fraction, 1);
}

/** A round upper end of the value axis (a multiple of 50 mm²). */
function axisTop(levels) {
  const high = Math.max(0, ...levels.flatMap((l) => [l.canal_area_mm2 ?? 0, l.cord_area_mm2 ?? 0]));
  return Math.max(50, Math.ceil(high / 50) * 50);
}

/** One bar of the chart (none for a missing value), with its value as a tooltip. */
function bar(x, value, top, kind, level) {
  if (value === null || value === undefined) return null;
  const height = ((CHART.bottom - CHART.top) * value) / top;
  return svg("rect", { x, y: CHART.bottom - height, width: CHART.bar, height, class: kind },
    svg("title", {}, `${level}: ${kind} area ${fmt(value, 1)} mm²`));
}

/** Canal and cord area per level as grouped bars (inline SVG, no library). */
export function areaChart(levels) {
  const top = axisTop(levels);
  const width = CHART.left + levels.length * CHART.group + 8;
  const chart = svg("svg", { viewBox: `0 0 ${width} 216`, width, height: 216, role: "img",
    "aria-label": "Bar chart of the canal and cord area per level, in mm²; the table above holds the values" });
  for (const tick of [0, top / 2, top]) {
    const y = CHART.bottom - ((CHART.bottom - CHART.top) * tick) / top;
    chart.append(svg("line", { x1: CHART.left - 4, x2: width, y1: y, y2: y, class: "grid" }),
      svg("text", { x: CHART.left - 8, y: y + 4, "text-anchor": "end" }, String(tick)));
  }
  levels.forEach((level, i) => {
    const x = CHART.left + i * CHART.group + 5;
    chart.append(...[bar(x, level.canal_area_mm2, top, "canal", level.level),
      bar(x + CHART.bar + 1, level.cord_area_mm2, top, "cord", level.level),
      svg("text", { x: x + CHART.bar, y: CHART.bottom + 15, "text-anchor": "middle" }, level.level)]
      .filter((node) => node !== null));
  });
  const legend = (x, kind, text) => [svg("rect", { x, y: 196, width: 12, height: 12, class: kind }),
    svg("text", { x: x + 16, y: 206 }, text)];
  chart.append(...legend(CHART.left, "canal", "Canal area"), ...legend(CHART.left + 110, "cord", "Cord area"));
  return el("figure", { class: "chart" }, el("figcaption", { text: "Canal and cord area per level (mm²)" }), chart);
}

function cobbText(degrees) {
  if (degrees === null || degrees === undefined) return "C2–C7 Cobb angle: not measured.";
  const kind = degrees >= 0 ? "lordosis" : "kyphosis";
  return `C2–C7 Cobb angle: ${fmt(degrees, 1)}° (${kind}; lordosis is positive, kyphosis negative).`;
}

/** The panel's content for an answer of GET /hope/measurements/{series_uid}. */
export function measurementsView(answer) {
  const m = answer.measurements;
  const levels = el("table", { id: "measurement-levels" },
    el("caption", { text: `Spinal canal and cord per level, series ${answer.series_uid}` }));
  fillTable(levels, ["Level", "Canal area (mm²)", "Cord area (mm²)", "Compression ratio (AP / transverse)",
    "Cord occupancy (% of canal)", "Tumour occupancy (% of canal)", "Cord AP diameter (mm)",
    "Cord transverse diameter (mm)"],
  m.levels.map((l) => [l.level, fmt(l.canal_area_mm2, 1), fmt(l.cord_area_mm2, 1), fmt(l.compression_ratio),
    percent(l.cord_occupancy), percent(l.tumor_occupancy), fmt(l.cord_ap_diameter_mm, 1),
    fmt(l.cord_transverse_diameter_mm, 1)]));
  const discs = el("table", { id: "measurement-discs" }, el("caption", { text: "Disc heights" }));
  fillTable(discs, ["Disc", "Mean height (mm)"], m.discs.map((d) => [d.disc, fmt(d.height_mm, 1)]));
  const skipped = Object.entries(m.skipped || {});
  return [
    el("p", { text: `Measurement report ${answer.sr_series_uid} of the label ${answer.seg_series_uid ?? "(unknown)"}`
      + `, made ${answer.created ?? "at an unknown time"}.` }),
    el("p", { id: "measurement-cobb", class: "figure", text: cobbText(m.cobb_c2_c7_deg) }),
    el("div", { class: "scroll" }, levels),
    areaChart(m.levels),
    el("div", { class: "scroll" }, discs),
    el("h3", { id: "measurement-skipped-title", text: "Not measured" }),
    skipped.length
      ? el("ul", { class: "muted", "aria-labelledby": "measurement-skipped-title" },
        ...skipped.map(([what, why]) => el("li", { text: `${what}: ${why}` })))
      : el("p", { class: "muted", text: "Every level, disc and the Cobb angle were measured." }),
  ];
}
