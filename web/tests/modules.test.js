// SPDX-License-Identifier: MIT
// Copyright (c) 2026 the pvgate authors. See web/LICENSE-MIT.
//
// Every module of the client parses and links (its imports exist). Modules
// that need a DOM stop at their first use of one, which is not a failure.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const STATIC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../static");
const PAGE_ONLY = new Set(["main.js", "list.js"]); // run the page at import

for (const name of fs.readdirSync(STATIC).filter((n) => n.endsWith(".js")).sort()) {
  test(`${name} parses and its imports resolve`, async () => {
    try {
      await import(pathToFileURL(path.join(STATIC, name)).href);
    } catch (e) {
      assert.ok(!(e instanceof SyntaxError), `${name}: ${e.message}`);
      assert.ok(PAGE_ONLY.has(name) && e instanceof ReferenceError, `${name}: ${e.stack}`);
    }
  });
}

test("the pages load their entry modules", () => {
  const web = path.resolve(STATIC, "..");
  assert.match(fs.readFileSync(path.join(web, "view.html"), "utf8"), /src="\.\.\/static\/main\.js"/);
  assert.match(fs.readFileSync(path.join(web, "index.html"), "utf8"), /src="static\/list\.js"/);
});
