// Shared readiness state: server.ts flips it on SIGTERM, /readyz and the middleware read it.
export class Lifecycle {
  #draining = false;
  get draining(): boolean {
    return this.#draining;
  }
  startDraining(): void {
    this.#draining = true;
  }
}
