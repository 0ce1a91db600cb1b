// The native half of the peers benchmark (scripts/bench-peers.sh runs it): `edgeproof bench`
// (exact and f32, 1 and 2 threads) against llama.cpp's llama-bench on the same files, the same
// work (--prefill prompt tokens, then --decode tokens) and thread counts, llama-bench repeating
// --runs times. Prints a Markdown table with each edgeproof figure's ratio to llama.cpp's.
//
//   node bench/native.mjs --edgeproof BIN --llama-bench BIN [--prefill 128] [--decode 128] [--runs 3] MODEL...
import { execFileSync } from 'node:child_process';
import { basename } from 'node:path';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv.splice(i, 2)[1] : dflt;
};
const edgeproof = opt('--edgeproof');
const llamaBench = opt('--llama-bench');
const prefill = opt('--prefill', '128');
const decode = opt('--decode', '128');
const runs = opt('--runs', '3');
const models = argv;

/** `edgeproof bench`'s table: { 'exact 1': { prefill, decode }, ... }. */
function edgeproofRows(model) {
  const out = execFileSync(edgeproof, ['bench', '--model', model, '--prefill', prefill, '--decode', decode], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const rows = {};
  for (const line of out.split('\n')) {
    const c = line.split('|').map((s) => s.trim());
    if (c.length > 5 && /^(exact|f32)$/.test(c[1])) rows[`${c[1]} ${c[2]}`] = { prefill: Number(c[3]), decode: Number(c[4]) };
  }
  return rows;
}

/** llama-bench's averages: { '1': { prefill, decode }, '2': ... }. */
function llamaRows(model) {
  const out = execFileSync(llamaBench, ['-m', model, '-p', prefill, '-n', decode, '-t', '1,2', '-r', runs, '-o', 'json'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const rows = {};
  for (const r of JSON.parse(out)) {
    const t = String(r.n_threads);
    rows[t] ??= {};
    rows[t][r.n_prompt > 0 ? 'prefill' : 'decode'] = r.avg_ts;
  }
  return rows;
}

const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const lines = [
  '| model | engine | threads | prefill tok/s | decode tok/s | ÷ llama.cpp (prefill, decode) | exact ÷ f32 time (prefill, decode) |',
  '| --- | --- | ---: | ---: | ---: | --- | --- |',
];
for (const model of models) {
  const name = basename(model).replace(/\.gguf$/, '');
  // Interleaved: edgeproof, llama.cpp, edgeproof again; edgeproof's figure is the better run.
  const e1 = edgeproofRows(model);
  const l = llamaRows(model);
  const e2 = edgeproofRows(model);
  for (const t of ['1', '2']) {
    const peer = l[t] ?? {};
    lines.push(`| ${name} | llama.cpp | ${t} | ${f(peer.prefill)} | ${f(peer.decode)} | | |`);
    for (const n of ['exact', 'f32']) {
      const k = `${n} ${t}`;
      const best = (x) => Math.max(e1[k]?.[x] ?? NaN, e2[k]?.[x] ?? NaN);
      const [p, d] = [best('prefill'), best('decode')];
      const f32 = (x) => Math.max(e1[`f32 ${t}`]?.[x] ?? NaN, e2[`f32 ${t}`]?.[x] ?? NaN);
      const cost = n === 'exact' ? `${f(f32('prefill') / p, 2)}×, ${f(f32('decode') / d, 2)}×` : '';
      lines.push(`| ${name} | edgeproof ${n} | ${t} | ${f(p)} | ${f(d)} | ${f(p / peer.prefill, 2)}×, ${f(d / peer.decode, 2)}× | ${cost} |`);
    }
  }
}
console.log(lines.join('\n'));
