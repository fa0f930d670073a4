interface Task { id: number; ms: number }
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
async function run(task: Task): Promise<string> {
  await delay(task.ms);
  return `task ${task.id} done`;
}
async function main(): Promise<void> {
  const tasks: Task[] = [{ id: 1, ms: 15 }, { id: 2, ms: 5 }];
  const order: string[] = [];
  await Promise.all(tasks.map(async (t) => { order.push(await run(t)); }));
  console.log(order);
  const results: Map<number, string> = new Map(tasks.map((t): [number, string] => [t.id, `#${t.id}`]));
  console.log(results);
}
main();
