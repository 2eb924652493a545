#!/usr/bin/env bash
# Copies what the GPU run of the Llama example needs into DEST (a folder carried to the GPU
# machine, which has no npm): dist/ (built with `npm run build:gpu`), src/ (the FFA kernel
# sources NVRTC compiles), examples/ (the example's kernels, the twin and the tokenised corpus in
# examples/llama/.data), package.json, and the package's runtime dependencies (package.json's
# "dependencies": koffi, commander, zod, @observablehq/plot, linkedom, ...) with theirs. About 35 MB.
#
#   bash examples/llama/carry.sh /work/main/.wt-train
#   LLAMA_CARRY_CHARTS=0 bash examples/llama/carry.sh DEST    # without the chart packages (draw the charts
#                                                             # later with `npm run example:llama -- plot`)
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${1:?usage: carry.sh DEST}
[ -f dist/examples/llama/main.js ] || { echo "carry: run 'npm run build:gpu' first" >&2; exit 1; }
[ -f examples/llama/.data/sotu-r50k.safetensors ] || { echo "carry: run 'npm run example:llama -- prepare-data --dataset sotu' first" >&2; exit 1; }
mkdir -p "$dest/node_modules"
for d in dist src examples; do rm -rf "${dest:?}/$d"; cp -a "$d" "$dest/$d"; done
cp package.json "$dest/"
# The dependency closure of the runtime packages, read from the lockfile.
packages=$(node -e '
  const fs = require("fs");
  const lock = require("./package-lock.json").packages;
  const seen = new Set();
  const visit = (name) => {
    if (seen.has(name) || !lock["node_modules/" + name] || !fs.existsSync("node_modules/" + name)) return;
    seen.add(name);
    const p = lock["node_modules/" + name];
    // optional dependencies carry native binaries (the @koromix/koffi-linux-x64 of koffi)
    for (const d of [...Object.keys(p.dependencies ?? {}), ...Object.keys(p.optionalDependencies ?? {})]) visit(d);
  };
  const skip = process.env.LLAMA_CARRY_CHARTS === "0" ? ["@observablehq/plot", "linkedom"] : [];
  Object.keys(require("./package.json").dependencies).filter((d) => !skip.includes(d)).forEach(visit);
  console.log([...seen].join("\n"));
')
for p in $packages; do
  mkdir -p "$dest/node_modules/$(dirname "$p")"
  rm -rf "${dest:?}/node_modules/$p"
  cp -a "node_modules/$p" "$dest/node_modules/$p"
done
echo "carry: $(echo "$packages" | wc -l) packages and the tree -> $dest ($(du -sh "$dest" | cut -f1))"
