// Loads the model named by ?model=, streams a greedy generation into the page, verifies the
// receipt; the outcome lands in window.outcome (and the page) for the test to read.
import { Engine } from 'edgeproof';

const status = document.getElementById('status');
const out = document.getElementById('out');

async function main() {
  const model = new URLSearchParams(location.search).get('model');
  const engine = await Engine.load(model, {
    onProgress: ({ stage, loaded, total }) => (status.textContent = `${stage} ${loaded}/${total ?? '?'}`),
  });
  const generation = engine.generate('Once upon a time', { maxTokens: 12 });
  let streamed = 0;
  for await (const { text } of generation) {
    out.textContent += text;
    streamed++;
  }
  const { receipt } = await generation.result;
  const verified = await engine.verify(receipt);
  status.textContent = verified.report;
  return { streamed, ok: verified.ok, report: verified.report, backend: engine.info().backend };
}

main().then(
  (outcome) => (window.outcome = outcome),
  (e) => {
    status.textContent = `${e.code}: ${e.message}`;
    window.outcome = { error: `${e.code}: ${e.message}` };
  },
);
