import fc from 'fast-check';
import { QueueOrder } from './queue-order';

type Op =
  | { op: 'add'; id: number }
  | { op: 'prepend'; id: number }
  | { op: 'delete'; id: number }
  | { op: 'iterateDeletingHead' };

const ID = fc.nat(12);
const OPS = fc.array(
  fc.oneof(
    { weight: 5, arbitrary: ID.map((id): Op => ({ op: 'add', id })) },
    { weight: 1, arbitrary: ID.map((id): Op => ({ op: 'prepend', id })) },
    { weight: 4, arbitrary: ID.map((id): Op => ({ op: 'delete', id })) },
    { weight: 1, arbitrary: fc.constant<Op>({ op: 'iterateDeletingHead' }) },
  ),
  { maxLength: 200 },
);

describe(QueueOrder.name, () => {
  it('should keep FIFO order and answer every rank as an array does, whatever the operations', () => {
    fc.assert(
      fc.property(OPS, (ops) => {
        const queue = new QueueOrder();
        let model: string[] = [];
        for (const step of ops) {
          const id = 'id' in step ? `j${step.id}` : '';
          switch (step.op) {
            case 'add':
              queue.add(id);
              if (!model.includes(id)) {
                model.push(id);
              }
              break;
            case 'prepend':
              queue.prepend(id);
              model = [id, ...model.filter((m) => m !== id)];
              break;
            case 'delete':
              expect(queue.delete(id)).toBe(model.includes(id));
              model = model.filter((m) => m !== id);
              break;
            case 'iterateDeletingHead': {
              // As claimNext does: delete each member while iterating; stop after two.
              const seen: string[] = [];
              for (const member of queue) {
                seen.push(member);
                queue.delete(member);
                if (seen.length === 2) {
                  break;
                }
              }
              expect(seen).toEqual(model.slice(0, 2));
              model = model.slice(2);
              break;
            }
            default: {
              const never: never = step;
              return never;
            }
          }
          expect([...queue]).toEqual(model);
          expect(queue.size).toBe(model.length);
          for (let i = 0; i < 13; i += 1) {
            const probe = `j${i}`;
            const at = model.indexOf(probe);
            expect(queue.rank(probe)).toBe(at < 0 ? null : at);
            expect(queue.has(probe)).toBe(at >= 0);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('should visit members added while iterating, as a Set does', () => {
    const queue = new QueueOrder().add('a').add('b');

    const seen: string[] = [];
    for (const member of queue) {
      seen.push(member);
      if (member === 'a') {
        queue.add('c');
      }
    }

    expect(seen).toEqual(['a', 'b', 'c']);
  });
});
