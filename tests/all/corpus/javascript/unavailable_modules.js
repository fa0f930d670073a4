// Modules and APIs a WebAssembly guest cannot have are refused by name (Node would load
// child_process; this output is SoulBox's, not Node's).
try { require('child_process'); } catch (error) { console.log(error.code); }
try { require('left-pad'); } catch (error) { console.log(error.code); }
fetch('http://example.com').catch((error) => console.log(error.name));
