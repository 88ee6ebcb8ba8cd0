// Lighthouse on one view of the dashboard, logged in, as a phone (Lighthouse's default mobile
// emulation and simulated throttling). Run by tests/e2e/test_lighthouse.py:
//
//   node audit.mjs <base url> <api key secret> <view hash> <report.json>
//
// Logs in through the page (the session token lives in the tab's sessionStorage), leaves the
// origin, then lets Lighthouse load the view in the same tab without resetting storage.
// Prints one JSON line: the category scores and the audits that did not pass.

import { writeFileSync } from "node:fs";
import lighthouse from "lighthouse";
import puppeteer from "puppeteer-core";

const [base, key, view, out] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: process.env.SMOKEHOUSE_TEST_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
try {
  const page = await browser.newPage();
  await page.goto(`${base}/`);
  await page.type("#api-key", key);
  await page.click("form.login button[type=submit]");
  await page.waitForSelector("#nav:not([hidden])");
  await page.goto("about:blank");
  const { lhr, report } = await lighthouse(
    `${base}/${view}`,
    {
      output: "json",
      logLevel: "error",
      disableStorageReset: true,
      onlyCategories: ["performance", "accessibility", "best-practices"],
    },
    undefined,
    page,
  );
  writeFileSync(out, report);
  const scores = Object.fromEntries(Object.entries(lhr.categories).map(([id, c]) => [id, Math.round(c.score * 100)]));
  const failing = Object.values(lhr.audits)
    .filter((a) => a.score !== null && a.score < 0.9 && a.scoreDisplayMode !== "informative" && a.scoreDisplayMode !== "manual")
    .map((a) => `${a.id}: ${a.displayValue || a.title}`);
  const metrics = Object.fromEntries(
    ["first-contentful-paint", "largest-contentful-paint", "total-blocking-time", "cumulative-layout-shift", "speed-index"]
      .map((id) => [id, lhr.audits[id]?.displayValue]),
  );
  // what Lighthouse measured was the logged-in view, not the login form
  const probeCards = await page.evaluate(() => document.querySelectorAll("[data-probe]").length);
  const shot = lhr.audits["final-screenshot"]?.details?.data;
  if (shot) writeFileSync(out.replace(/\.json$/, ".jpg"), Buffer.from(shot.split(",")[1], "base64"));
  console.log(JSON.stringify({ scores, metrics, failing, finalUrl: lhr.finalDisplayedUrl, probeCards }));
} finally {
  await browser.close();
}
