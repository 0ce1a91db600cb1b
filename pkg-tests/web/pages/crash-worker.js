// A worker serving an Engine that dies (an uncaught error) when the test posts 'crash'.
import { serveWorker } from '/pkg/worker.js';

serveWorker();
self.addEventListener('message', ({ data }) => {
  if (data === 'crash') setTimeout(() => { throw new Error('crash requested by the test'); });
});
