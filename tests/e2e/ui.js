// The web UI in headless Chromium (Debian's), driven by playwright-core. Called by ui.sh:
//   node ui.js BASE SHOTS_DIR
// with the images ui.sh pushed. Prints `ok - ...` / `not ok - ...` lines, as the suites do.
"use strict";
const { chromium } = require("playwright-core");
const [base, shots] = process.argv.slice(2);
let failed = 0;
const ok = (name, cond, why) => {
  if (cond) console.log(`ok - ${name}`);
  else { failed++; console.log(`not ok - ${name} (${why || "failed"})`); }
};

async function login(page, user, pass) {
  await page.goto(`${base}/ui/login`);
  await page.fill("#username", user);
  await page.fill("#password", pass);
  await Promise.all([page.waitForNavigation(), page.click("form.login button")]);
}

async function logout(page) {
  await Promise.all([page.waitForNavigation(), page.click("header form button")]);
}

(async () => {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  const ctx = await browser.newContext({
    viewport: { width: 1100, height: 800 },
    permissions: ["clipboard-read", "clipboard-write"],
  });
  const page = await ctx.newPage();
  const errors = [];
  // Script errors and CSP refusals; not the status of a response (the refused delete's 403).
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource: the server responded with a status of 403")) errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("response", (r) => { if (r.status() === 404) errors.push(`404 for ${r.url()}`); });

  // Anonymous: exactly what anonymous pull allows (public/*).
  await page.goto(`${base}/`, { waitUntil: "load" });
  ok("a browser's GET / lands on /ui/", page.url() === `${base}/ui/`, page.url());
  const anon = await page.textContent("main");
  ok("anonymous visitors see public/hello", anon.includes("public/hello"), anon);
  ok("anonymous visitors see no team or secret repository", !anon.includes("team/") && !anon.includes("secret"), anon);
  await page.screenshot({ path: `${shots}/anonymous.png`, fullPage: true });

  await login(page, "alice", "alice-pass-1");
  const repos = await page.textContent("main");
  ok("alice logged in sees team/web and team/multi", repos.includes("team/web") && repos.includes("team/multi"), repos);
  ok("alice does not see secret/x", !repos.includes("secret"), repos);
  ok("the header names the user", (await page.textContent("header")).includes("alice"));
  await page.screenshot({ path: `${shots}/repositories.png`, fullPage: true });

  await page.click("text=team/web");
  await page.waitForSelector("table");
  const tags = await page.textContent("table");
  ok("team/web lists tags v1 and v2", tags.includes("v1") && tags.includes("v2"), tags);
  await page.screenshot({ path: `${shots}/repository.png`, fullPage: true });

  // The multi-arch index and one platform.
  await page.goto(`${base}/ui/r/team/multi`);
  await page.click("table >> text=1.0");
  await page.waitForSelector("text=Platforms");
  const idx = await page.textContent("main");
  ok("the index page lists linux/amd64 and linux/arm64", idx.includes("linux/amd64") && idx.includes("linux/arm64"), idx);
  await page.screenshot({ path: `${shots}/index.png`, fullPage: true });
  await page.click("ul.platforms >> text=linux/arm64");
  await page.waitForSelector("text=Layers");
  const plat = await page.textContent("main");
  ok("a platform's page shows its config and layers", plat.includes("arm64") && plat.includes("Layers"), plat.slice(0, 300));

  // The image with a referrer, and its pull command.
  await page.goto(`${base}/ui/r/team/web`);
  await page.click("table >> text=v1");
  await page.waitForSelector("text=Referrers");
  const img = await page.textContent("main");
  ok("the image page lists the signature as a referrer", img.includes("application/vnd.example.signature"), img.slice(0, 400));
  const cmd = await page.textContent(".cmd code");
  ok("the pull command names this registry and the digest", /^docker pull 127\.0\.0\.1:\d+\/team\/web@sha256:[0-9a-f]{64}$/.test(cmd), cmd);
  await page.click(".cmd button.copy");
  await page.waitForFunction(() => document.querySelector(".cmd button.copy").textContent !== "Copy", null, { timeout: 5000 }).catch(() => {});
  const label = await page.textContent(".cmd button.copy");
  const clip = await page.evaluate(() => navigator.clipboard.readText()).catch((e) => `(${e})`);
  ok("the copy button puts the pull command on the clipboard", label === "Copied" && clip === cmd, `${label}: ${clip}`);
  await page.screenshot({ path: `${shots}/manifest.png`, fullPage: true });

  // alice deletes tag v2 (confirming the dialog).
  await page.goto(`${base}/ui/r/team/web`);
  page.once("dialog", (d) => d.accept());
  await Promise.all([page.waitForNavigation(), page.click('form.delete:has(input[value="v2"]) button')]);
  const after = await page.textContent("main");
  ok("alice's delete of tag v2 is done", !/\bv2\b/.test(await page.textContent("table")) && after.includes("v1"), after.slice(0, 300));
  await logout(page);
  ok("logging out ends the session", (await page.textContent("header")).includes("Log in"));

  // bob may pull team/* but not delete: the button is disabled, and a forged POST fails.
  await login(page, "bob", "bob-pass-2");
  await page.goto(`${base}/ui/r/team/web`);
  const disabled = await page.getAttribute('button[disabled]:has-text("Delete tag")', "title");
  ok("bob's delete button is disabled with the reason", (disabled || "").includes("may not delete"), disabled);
  // A form built by hand with bob's own CSRF token (fetch() is barred by the CSP).
  const [resp] = await Promise.all([
    page.waitForNavigation(),
    page.evaluate(() => {
      const f = document.createElement("form");
      f.method = "post";
      f.action = "/ui/delete";
      const csrf = document.querySelector('header input[name="csrf"]').value;
      for (const [k, v] of [["csrf", csrf], ["repo", "team/web"], ["tag", "v1"]]) {
        const i = document.createElement("input");
        i.type = "hidden"; i.name = k; i.value = v;
        f.appendChild(i);
      }
      document.body.appendChild(f);
      f.submit();
    }),
  ]);
  const status = resp.status();
  ok("bob's forged delete is refused", status === 403, String(status));
  await page.goto(`${base}/ui/r/team/web`);
  ok("and v1 is still there", (await page.textContent("table")).includes("v1"));
  await logout(page);

  // A narrow phone screen still shows the page without horizontal overflow of the body.
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto(`${base}/ui/`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  ok("the page fits a phone's width", overflow <= 1, String(overflow));
  await page.screenshot({ path: `${shots}/phone.png`, fullPage: true });

  ok("no errors in the browser console (CSP included)", errors.length === 0, errors.join(" | "));
  await browser.close();
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.log(`not ok - the browser run (${String(e).split("\n")[0]})`); process.exit(1); });
