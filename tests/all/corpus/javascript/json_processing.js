const data = JSON.parse('{"orders":[{"id":1,"items":[{"sku":"A","qty":2,"price":9.99},{"sku":"B","qty":1,"price":24.5}]},{"id":2,"items":[{"sku":"A","qty":5,"price":9.99}]}]}');
const totals = data.orders.map((o) => ({ id: o.id, total: Math.round(o.items.reduce((s, i) => s + i.qty * i.price, 0) * 100) / 100 }));
console.log(totals);
const bySku = {};
for (const order of data.orders) for (const item of order.items) bySku[item.sku] = (bySku[item.sku] || 0) + item.qty;
console.log(bySku);
console.log(JSON.stringify(totals));
console.log(JSON.stringify({ nested: { list: [1, 2], flag: true } }, null, 2));
console.log(JSON.stringify({ a: 1, b: [1, 2] }, (k, v) => (typeof v === 'number' ? v * 10 : v)));
