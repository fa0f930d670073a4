const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function fetchUser(id) {
  await sleep(5);
  if (id < 0) throw new Error(`invalid id ${id}`);
  return { id, name: `user${id}` };
}
async function main() {
  const users = await Promise.all([1, 2, 3].map(fetchUser));
  console.log(users);
  try {
    await fetchUser(-1);
  } catch (error) {
    console.log('caught:', error.message);
  }
  const settled = await Promise.allSettled([fetchUser(4), fetchUser(-2)]);
  console.log(settled.map((s) => s.status));
  const first = await Promise.race([sleep(20).then(() => 'slow'), sleep(1).then(() => 'fast')]);
  console.log('race:', first);
}
main().then(() => console.log('done'));
