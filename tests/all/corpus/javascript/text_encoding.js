const encoder = new TextEncoder();
const bytes = encoder.encode('héllo, 世界 🌍');
console.log(bytes.length, bytes.slice(0, 6));
console.log(new TextDecoder().decode(bytes));
console.log(new TextDecoder('utf-8').decode(new Uint8Array([0xe4, 0xb8, 0x96, 0xe7, 0x95, 0x8c])));
console.log(btoa('binary'), atob('YmluYXJ5'));
