// Start the Python ExportBackupWorkflow from Node by its type name, with a plain JSON argument.
//
// Plain JavaScript ESM so Node 20 runs it directly (no compile step). The @temporalio/client API
// is exactly the same from TypeScript: rename to .ts and add types if you like.
//
// Usage: node start-export.mjs PROJECT_ID [FORMAT] [REQUEST_ID]
// Env:   TEMPORAL_ADDRESS (localhost:7233), TEMPORAL_NAMESPACE (default),
//        TEMPORAL_TASK_QUEUE (export-backup)
//
// Same contract as starter.py: workflow id export-backup-PROJECT_ID-REQUEST_ID (a random request
// id when none is given); a repeated start joins the running backup or returns the finished one,
// and only a failed one is run again.
import { randomUUID } from 'node:crypto';
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowIdConflictPolicy,
  WorkflowIdReusePolicy,
} from '@temporalio/client';

const [projectId, format, requestId = randomUUID().replaceAll('-', '').slice(0, 12)] = process.argv.slice(2);
if (!projectId) {
  console.error(
    'usage: node start-export.mjs PROJECT_ID [FORMAT] [REQUEST_ID]   (FORMAT: sql | tar | custom | directory)',
  );
  process.exit(2);
}

const address = process.env.TEMPORAL_ADDRESS || 'localhost:7233';
const namespace = process.env.TEMPORAL_NAMESPACE || 'default';
const taskQueue = process.env.TEMPORAL_TASK_QUEUE || 'export-backup';

// The workflow input: one JSON object. An omitted format is dropped by JSON, so the workflow's
// default applies.
const input = { project_id: projectId, format };

/** "message: cause message: ..." for an error and its cause chain (WorkflowFailedError → ApplicationFailure). */
function describe(err) {
  const parts = [];
  for (let e = err; e && parts.length < 5; e = e.cause) {
    parts.push(e.message || String(e));
  }
  return parts.join(': ');
}

let connection;
let exitCode = 0;
try {
  // Fails with a clear error after connectTimeout instead of hanging when the server is unreachable.
  connection = await Connection.connect({ address, connectTimeout: '10s' });
  const client = new Client({ connection, namespace });
  const workflowId = `export-backup-${projectId}-${requestId}`;
  let handle;
  try {
    // Started by name: no import of workflow code, the Python worker owns the definition.
    handle = await client.workflow.start('ExportBackupWorkflow', {
      args: [input],
      taskQueue,
      workflowId,
      // What the Web UI shows for the run, as starter.py sets it.
      staticSummary: `Export backup of project ${projectId} (${format || 'custom'})`,
      // Running: join it. Closed: only a failed (or cancelled, terminated, timed out) one runs again.
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    });
    console.error(`started ${workflowId} (run ${handle.firstExecutionRunId}) on ${address}/${namespace}, queue ${taskQueue}`);
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    handle = client.workflow.getHandle(workflowId); // completed before: its result is the answer
    console.error(`${workflowId} already completed on ${address}/${namespace}: its result follows`);
  }
  const result = await handle.result();
  console.log(JSON.stringify(result));
} catch (err) {
  console.error(`export failed: ${describe(err)}`);
  exitCode = 1;
} finally {
  await connection?.close();
}
process.exit(exitCode);
