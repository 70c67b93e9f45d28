// Drives clusto's web UI in Debian's chromium through playwright-core, as a
// technician would: give the token, search, open a server, open its rack,
// check every device is drawn at its units, watch a change arrive, preview
// a plan. Run by tests/ui.rs, which builds the inventory and starts
// `clusto serve`; exits 1 naming the first thing that is wrong. Screenshots
// go to $SHOTS.
//
// env: CLUSTO_URL, VIEWER, EDITOR (tokens), EXPECT (JSON: rack, elevation,
// server, free unit, IP figures, what the server's page shows), SHOTS.
import { readFileSync, mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const url = process.env.CLUSTO_URL;
const expect = JSON.parse(readFileSync(process.env.EXPECT, "utf8"));
const shots = process.env.SHOTS;
mkdirSync(shots, { recursive: true });

function check(ok, what) {
  if (!ok) throw new Error(what);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update"],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1300 } });
  page.setDefaultTimeout(15000);
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // HTTP answers (401 before the token, the 404 and 422 asked for below)
    // are the browser logging a status the script checks itself; anything
    // else the page logs as an error is a failure.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(`console: ${m.text()}`);
  });

  // 1. No token yet: the page asks for one, then shows the inventory.
  await page.goto(`${url}/ui/`);
  await page.locator("#token-input").waitFor({ state: "visible" });
  await page.fill("#token-input", process.env.VIEWER);
  await page.click("#token-form button");
  await page.locator(`a[href="/ui/racks/${expect.rack}"]`).waitFor();
  const ipText = await page.locator(".util").first().textContent();
  check(ipText.includes(`${expect.ipUsed} of ${expect.ipCapacity}`), `IP utilisation shows "${ipText}"`);
  await page.screenshot({ path: `${shots}/home.png`, fullPage: true });

  // 2. Search by a fragment of the server's name, open it.
  await page.fill("#q", expect.server.slice(0, 4));
  await page.press("#q", "Enter");
  await page.waitForURL(/\/ui\/search/);
  await page.locator(`table a[href="/ui/entities/${expect.server}"]`).click();
  await page.waitForURL(new RegExp(`/ui/entities/${expect.server}$`));
  await page.locator("h1", { hasText: expect.server }).waitFor();
  const body = await page.locator("main").textContent();
  for (const want of expect.entityShows) {
    check(body.includes(want), `the server's page lacks "${want}"`);
  }
  await page.screenshot({ path: `${shots}/server.png`, fullPage: true });

  // 3. Its rack: every device at its units, every other unit empty.
  await page.locator(`main a[href="/ui/racks/${expect.rack}"]`).first().click();
  await page.waitForURL(new RegExp(`/ui/racks/${expect.rack}$`));
  await checkElevation(page, expect.elevation, "front");
  await page.screenshot({ path: `${shots}/rack.png`, fullPage: true });

  // 4. Live: a server placed through the API appears without a reload.
  const placed = await fetch(`${url}/apis/clusto.dev/v1alpha1/apply?applySet=ui-test`, {
    method: "POST",
    headers: { Authorization: `Bearer ${process.env.EDITOR}`, "Content-Type": "application/yaml" },
    body: `apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: live1}\nspec: {rack: ${expect.rack}, ru: ${expect.freeUnit}}\n`,
  });
  check(placed.ok, `apply through the API: HTTP ${placed.status} ${await placed.text()}`);
  const t0 = Date.now();
  await page.locator('g.device[data-name="live1"]').waitFor({ timeout: 5000 });
  const liveMs = Date.now() - t0;
  const live = await unitsOf(page, "live1");
  check(live.start === expect.freeUnit && live.end === expect.freeUnit, `live1 drawn at ${JSON.stringify(live)}`);
  const rear = structuredClone(expect.elevation);
  rear.mounted.push({ name: "live1", kind: "Server", ru: { start: expect.freeUnit, end: expect.freeUnit }, face: "front", fullDepth: true });

  // 5. The rear: rear-mounted devices plainly, full-depth fronts from behind.
  await page.click('.toggle a:has-text("rear")');
  await page.waitForURL(/side=rear/);
  await checkElevation(page, rear, "rear");
  await page.screenshot({ path: `${shots}/rack-rear.png`, fullPage: true });

  // 6. Click a device: its page.
  const first = expect.elevation.mounted[0].name;
  await page.locator(`svg.elevation g.device[data-name="${first}"]`).click();
  await page.waitForURL(new RegExp(`/ui/entities/${first}$`));

  // 7. Plan preview: the CLI's text; nothing written.
  await page.goto(`${url}/ui/plan`);
  await page.fill("#manifests", `apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: planned1}\nspec: {rack: ${expect.rack}, ru: ${expect.freeUnit + 1}}\n`);
  await page.click("#plan-form button");
  const plan = await page.locator("pre.plan").textContent();
  check(plan.includes("+ Server planned1") && plan.includes("Plan: 1 to add"), `plan preview shows: ${plan}`);
  const bad = await page.evaluate(async () => (await fetch("/apis/clusto.dev/v1alpha1/entities/planned1", {
    headers: { Authorization: `Bearer ${localStorage.getItem("clusto-token")}` } })).status);
  check(bad === 404, `a plan preview wrote planned1 (GET answered ${bad})`);
  // A broken manifest: the rule, in an error box.
  await page.fill("#manifests", `apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: planned2}\nspec: {rack: ${expect.rack}, ru: ${live.start}}\n`);
  await page.click("#plan-form button");
  const err = await page.locator("#plan-out .error").textContent();
  check(err.includes("planned2") && err.includes("overlaps live1"), `plan error shows: ${err}`);
  await page.screenshot({ path: `${shots}/plan.png`, fullPage: true });

  check(errors.length === 0, errors.join("\n"));
  console.log(JSON.stringify({ ok: true, liveMs, shots }));
} catch (e) {
  console.error(`ui test failed: ${e.message}`);
  if (errors.length) console.error(errors.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}

// The units a drawn device covers, from where its box sits against the
// numbered empty slots (not from its data attributes).
async function unitsOf(page, name) {
  return page.evaluate((name) => {
    const box = document.querySelector(`svg.elevation g.device[data-name="${name}"] rect`).getBBox();
    const units = [...document.querySelectorAll("svg.elevation rect.empty")]
      .map((r) => ({ u: Number(r.dataset.unit), b: r.getBBox() }))
      .filter(({ b }) => b.y + 2 >= box.y && b.y + b.height <= box.y + box.height + 2)
      .map(({ u }) => u);
    return { start: Math.min(...units), end: Math.max(...units), label: document.querySelector(`svg.elevation g.device[data-name="${name}"] text`).textContent };
  }, name);
}

async function checkElevation(page, el, side) {
  await page.locator(`svg.elevation[data-side="${side}"]`).waitFor();
  const seen = el.mounted.filter((m) => m.face === side || m.fullDepth);
  const drawn = await page.locator("svg.elevation g.device").count();
  check(drawn === seen.length, `${side}: ${drawn} devices drawn, ${seen.length} expected`);
  for (const m of seen) {
    const at = await unitsOf(page, m.name);
    check(at.start === m.ru.start && at.end === m.ru.end,
      `${side}: ${m.name} drawn at units ${at.start}-${at.end}, recorded at ${m.ru.start}-${m.ru.end}`);
    const label = m.face === side ? m.name : `[${m.name}]`;
    check(at.label === label, `${side}: ${m.name} labelled "${at.label}"`);
  }
  const slots = await page.locator("svg.elevation rect.empty").count();
  check(slots === el.maxU - el.minU + 1, `${side}: ${slots} unit slots for ${el.minU}-${el.maxU}`);
}
