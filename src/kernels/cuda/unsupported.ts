/** Thrown by the CUDA launchers for inputs their kernels do not handle. */
export class FfaCudaUnsupportedError extends Error {
  constructor(what: string) {
    super(`cuda ffa: ${what}`);
    this.name = 'FfaCudaUnsupportedError';
  }
}
