const d = new Date(Date.UTC(2024, 1, 29, 13, 45, 30));
console.log(d.toISOString(), d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCDay());
const next = new Date(d);
next.setUTCDate(next.getUTCDate() + 1);
console.log(next.toISOString().slice(0, 10));
const diffDays = (new Date('2024-12-25T00:00:00Z') - new Date('2024-01-01T00:00:00Z')) / 86400000;
console.log(diffDays, JSON.stringify({ when: d }));
console.log(new Date('2024-03-10T08:00:00Z').getTime(), Date.UTC(1970, 0, 2));
console.log(typeof Date.now(), isNaN(new Date('garbage')));
