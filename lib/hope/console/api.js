// HOPE's API as the console calls it (same origin: the browser session cookie goes along), and DOM helpers.

/** Roles from lowest to highest, as GET /auth/token/valid names them. */
export const ROLES = ["user", "annotator", "reviewer", "admin"];

/** An error answer of HOPE: its HTTP status and its `detail`. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

/** Call HOPE; the parsed JSON answer, or an ApiError with HOPE's reason. `body`: an object (JSON) or FormData. */
export async function call(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let answer = text;
  try { answer = text ? JSON.parse(text) : null; } catch { /* not JSON: keep the text */ }
  if (!response.ok) throw new ApiError(response.status, answer && answer.detail !== undefined ? answer.detail : text);
  return answer;
}

/** A new element with attributes (`text` sets its text) and children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** Fill `table` (keeping its caption) with a header row and one row per item; cells are text or nodes. */
export function fillTable(table, headers, rows) {
  const caption = table.querySelector("caption");
  table.replaceChildren(...(caption ? [caption] : []));
  const head = el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col", text: h }))));
  const body = el("tbody");
  for (const row of rows) {
    body.append(el("tr", {}, ...row.map((cell) => el("td", {}, cell instanceof Node ? cell : String(cell ?? "–")))));
  }
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: headers.length, text: "none" })));
  table.append(head, body);
}

/** A number as text with `digits` decimals, or a dash. */
export function fmt(value, digits = 2) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}
