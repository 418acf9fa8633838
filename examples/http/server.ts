// One replica of a replicated notes service with a tiny HTTP API. Start three:
//   node --import tsx server.ts 1 & node --import tsx server.ts 2 & node --import tsx server.ts 3 &
// POST a note to any of http://127.0.0.1:3001-3003, GET the notes from any; kill one (even the
// leader) and the other two go on.
import { createServer } from 'node:http';
import { Store, type Transaction } from 'raftstore';

class Note {
  declare readonly id: number;
  declare readonly text: string;
}
const transactions = {
  addNote: (tx: Transaction, text: string) => tx.create(Note, { text }),
};

const i = Number(process.argv[2]); // this replica: 1, 2 or 3
const store = await Store.open({
  group: 'notes', config: '127.0.0.1:8201:0,127.0.0.1:8202:0,127.0.0.1:8203:0',
  port: 8200 + i, dir: `./data/notes-${i}`, transactions, classes: [Note],
});

const server = createServer(async (req, res) => {
  try {
    if (req.method === 'POST') {
      let text = '';
      for await (const chunk of req) text += chunk;
      res.end(`${JSON.stringify(await store.transact('addNote', text))}\n`); // through any replica
    } else {
      const notes = await store.read((v) => v.all(Note), { consistency: 'linearizable' });
      res.end(`${JSON.stringify(notes)}\n`);
    }
  } catch (err) {
    res.statusCode = 503; // e.g. ERR_RAFT_TIMEOUT while a new leader is elected: retry
    res.end(`${(err as { code?: string }).code ?? 'ERROR'}: ${(err as Error).message}\n`);
  }
});
server.listen(3000 + i, '127.0.0.1', () => console.log(`replica ${i} on http://127.0.0.1:${3000 + i}`));
process.on('SIGTERM', () => server.close(() => void store.close()));
