// A worker of the page's own on the threaded build (edgeproof/mt/worker in an app).
import { serveWorker } from '/pkg/mt/worker.js';
serveWorker();
