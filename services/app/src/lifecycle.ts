// Shared readiness state: server.ts marks the public listener up and flips draining on
// SIGTERM; /readyz and the middleware read it.
export class Lifecycle {
  #draining = false;
  #listening = false;
  get draining(): boolean {
    return this.#draining;
  }
  startDraining(): void {
    this.#draining = true;
  }
  /** True once the public listener accepts: the operator listener starts first, so readiness waits for this. */
  get listening(): boolean {
    return this.#listening;
  }
  markListening(): void {
    this.#listening = true;
  }
}
