// ESLint + typescript-eslint + Prettier, not Biome: type-aware rules catch a dropped promise.
// Biome is one fast binary but has no type information; typescript-eslint reads the types, so
// no-floating-promises / no-misused-promises catch an un-awaited promise in an Express 5
// handler or a test, which would otherwise fail silently. It is also the pair
// testcontainers-node (and the developers' guide) use. Prettier owns the layout
// (.prettierrc.json); eslint-config-prettier turns off the rules that would argue with it.
import js from "@eslint/js";
import prettier from "eslint-config-prettier";
import { defineConfig, globalIgnores } from "eslint/config";
import globals from "globals";
import tseslint from "typescript-eslint";

export default defineConfig(
  globalIgnores([
    "node_modules/",
    ".cache/",
    ".run/",
    "**/dist/",
    "loadtest/reports/",
    "loadtest/bench/results/",
    "docs/",
  ]),
  js.configs.recommended,
  {
    files: ["**/*.ts"],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // `_name` marks a parameter kept for its position (Express's (req, res, next), error handlers).
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" },
      ],
      // An async function without await is how a method of a Promise-returning interface turns
      // a throw into a rejection (SessionCounter.read, fakes in tests): not a mistake here.
      "@typescript-eslint/require-await": "off",
      // Callback APIs (express-session, autocannon) type their error `any`; passing it on to reject()
      // is right. As only-throw-error does, still refuse a rejection with a string or number literal.
      "@typescript-eslint/prefer-promise-reject-errors": [
        "error",
        { allowThrowingAny: true, allowThrowingUnknown: true },
      ],
    },
  },
  { files: ["**/*.js"], languageOptions: { globals: globals.node } },
  { files: ["services/app/public/**/*.js"], languageOptions: { globals: globals.browser } },
  prettier,
  // After eslint-config-prettier, which turns max-len off: Prettier wraps code at 120 but leaves long strings,
  // comments and template literals alone, so this catches those. Core max-len is deprecated (kept until ESLint 11);
  // @stylistic/eslint-plugin's max-len takes the same options when it goes.
  { rules: { "max-len": ["error", { code: 120, ignoreUrls: true }] } },
);
