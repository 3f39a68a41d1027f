// Which images the Compose cluster and the Redis tests run on: the official pinned ones when
// they are present or can be pulled, else local stand-ins (build-offline-images.sh); and the
// app image, built from services/app/Dockerfile on top of whichever Node image that is.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { docker, run } from "../cluster/docker.ts";

const repoRoot = resolve(import.meta.dirname, "../..");

/** The defaults in docker-compose.yml and the Dockerfile; keep the three in step. */
export const OFFICIAL_IMAGES = {
  NODE_IMAGE: "node:24-bookworm-slim",
  REDIS_IMAGE: "redis:7.4-alpine",
  NGINX_IMAGE: "nginx:1.28-alpine",
} as const;

export type BaseImages = Record<keyof typeof OFFICIAL_IMAGES, string>;

export const APP_IMAGE = process.env.APP_IMAGE || "express-session-cluster/app:local";

type Log = (line: string) => void;

async function present(image: string): Promise<boolean> {
  return docker(["image", "inspect", "--format", "{{.Id}}", image], { timeoutMs: 30_000 }).then(
    () => true,
    () => false,
  );
}

/** Pulls an image; resolves to undefined when done, or to the reason it failed. */
async function pull(image: string, log: Log): Promise<string | undefined> {
  log(`pulling ${image}...`);
  return docker(["pull", "--quiet", image], { timeoutMs: 600_000 }).then(
    () => undefined,
    (err: Error) => (err.message.split("\n").at(-1) ?? "").trim().slice(0, 200),
  );
}

let resolved: Promise<BaseImages> | undefined;

/**
 * Picks each base image: a variable you set (NODE_IMAGE, REDIS_IMAGE, NGINX_IMAGE) must be
 * usable as given; an official default is used when present or pullable, and replaced by its
 * offline stand-in when no registry answers. Resolved once per process.
 */
export function resolveBaseImages(log: Log = () => {}): Promise<BaseImages> {
  resolved ??= (async () => {
    const out = {} as BaseImages;
    const missing: (keyof BaseImages)[] = [];
    let why = "";
    for (const key of Object.keys(OFFICIAL_IMAGES) as (keyof BaseImages)[]) {
      const wanted = process.env[key];
      if (wanted) {
        const failed = (await present(wanted)) ? undefined : await pull(wanted, log);
        if (failed)
          throw new Error(
            `${key}=${wanted} is neither present nor pullable (${failed}); unset ${key} to fall back to ` +
              `the offline images`,
          );
        out[key] = wanted;
        continue;
      }
      const failed = (await present(OFFICIAL_IMAGES[key])) ? undefined : await pull(OFFICIAL_IMAGES[key], log);
      if (failed === undefined) {
        out[key] = OFFICIAL_IMAGES[key];
      } else {
        missing.push(key);
        why = failed;
      }
    }
    if (missing.length > 0) {
      log(`no registry answered (${why})`);
      log(
        `building offline stand-ins for ${missing.map((k) => OFFICIAL_IMAGES[k]).join(", ")} ` +
          `(infra/images/build-offline-images.sh)...`,
      );
      const lines = await run(resolve(repoRoot, "infra/images/build-offline-images.sh"), [], { timeoutMs: 600_000 });
      const built = Object.fromEntries(
        lines
          .trim()
          .split("\n")
          .map((l) => l.split("=", 2) as [string, string]),
      );
      for (const key of missing) {
        if (!built[key]) throw new Error(`build-offline-images.sh printed no ${key}`);
        out[key] = built[key];
      }
    }
    return out;
  })();
  resolved.catch(() => (resolved = undefined));
  return resolved;
}

type Builder = { file: string; args: string[]; env: NodeJS.ProcessEnv };

/**
 * A docker client that builds with BuildKit (the Dockerfile mounts a build secret): the buildx
 * plugin when installed, else a client from before 23.0, where BuildKit was built in (Debian's
 * docker.io ships one at /usr/bin/docker; a newer client without buildx only has the legacy builder).
 */
async function buildkitBuilder(): Promise<Builder> {
  if (
    await docker(["buildx", "version"], { timeoutMs: 10_000 }).then(
      () => true,
      () => false,
    )
  ) {
    return { file: "docker", args: ["buildx", "build", "--load"], env: process.env };
  }
  for (const file of ["docker", "/usr/bin/docker"]) {
    const version = await run(file, ["version", "--format", "{{.Client.Version}}"], { timeoutMs: 10_000 }).catch(
      () => "",
    );
    const major = Number(version.split(".")[0]);
    if (major > 0 && major < 23) return { file, args: ["build"], env: { ...process.env, DOCKER_BUILDKIT: "1" } };
  }
  throw new Error(
    "building services/app/Dockerfile needs BuildKit: install Docker's buildx plugin " +
      "(docker-buildx-plugin, or docker-buildx on Debian/Ubuntu)",
  );
}

/** The CA bundle npm needs inside the build when this machine's TLS is intercepted, if any. */
async function npmCaFile(): Promise<string | undefined> {
  const candidates = [process.env.NPM_CA_FILE, process.env.NODE_EXTRA_CA_CERTS];
  candidates.push(
    await run("npm", ["config", "get", "cafile"], { timeoutMs: 20_000 }).then(
      (s) => s.trim(),
      () => undefined,
    ),
  );
  return candidates.find((f): f is string => !!f && f !== "null" && f !== "undefined" && existsSync(f));
}

/** Builds the app image (layer cache makes an unchanged rebuild take a second or two). */
export async function buildAppImage(nodeImage: string, tag = APP_IMAGE, log: Log = () => {}): Promise<void> {
  const builder = await buildkitBuilder();
  const ca = await npmCaFile();
  const args = [
    ...builder.args,
    "--progress=plain",
    "-f",
    "services/app/Dockerfile",
    "--build-arg",
    `NODE_IMAGE=${nodeImage}`,
    "-t",
    tag,
  ];
  // A secret is mounted for one RUN and never stored in a layer, unlike a build argument.
  if (ca) args.push("--secret", `id=npm_ca,src=${ca}`);
  const t0 = performance.now();
  log(`building ${tag} from services/app/Dockerfile on ${nodeImage}...`);
  await run(builder.file, [...args, "."], { cwd: repoRoot, env: builder.env, timeoutMs: 900_000 });
  log(`built ${tag} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
