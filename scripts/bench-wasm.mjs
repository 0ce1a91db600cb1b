// The wasm32 CPU path's speed under Node, from a built package (scripts/build-pkg.sh):
//   node scripts/bench-wasm.mjs [pkg dir, default pkg/]
// SmolLM2 (EDGEPROOF_SMOLLM2, else the fetch-models.sh cache path; any GGUF the package runs),
// a 59-token prompt, 32 greedy tokens (TOKENS=N for more); prints the timings and the
// receipt's final hash (equal bits, equal hash).
import { resolve } from 'node:path';
import { homedir } from 'node:os';
import { pathToFileURL } from 'node:url';

const dir = resolve(process.argv[2] ?? 'pkg');
const { Engine } = await import(pathToFileURL(`${dir}/node.js`).href);
const model = process.env.EDGEPROOF_SMOLLM2 ?? `${homedir()}/.cache/edgeproof/SmolLM2-135M-Instruct.Q4_1.gguf`;
const engine = await Engine.load(model);
const prompt =
  'The history of the printing press begins in the fifteenth century, when Johannes Gutenberg, a goldsmith from Mainz, ' +
  'combined movable metal type, oil-based ink and a wooden screw press into a system that could produce books quickly. ' +
  'Within a few decades, printing shops had spread across Europe, and';
const r = await engine.generate(prompt, { maxTokens: Number(process.env.TOKENS ?? 32), temperature: 0 }).result;
const t = r.timings;
console.log(
  JSON.stringify({
    pkg: dir,
    promptTokens: t.promptTokens,
    generatedTokens: t.generatedTokens,
    prefillTokensPerS: +t.prefillTokensPerS.toFixed(2),
    decodeTokensPerS: +t.decodeTokensPerS.toFixed(2),
    final: r.receipt?.final,
  }),
);
