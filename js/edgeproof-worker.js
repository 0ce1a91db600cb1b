// The package's default worker for WorkerEngine.load(): serves one Engine.
import { serveWorker } from './worker.js';
serveWorker();
