class Shape {
  constructor(name) { this.name = name; }
  area() { return 0; }
  toString() { return `${this.name} with area ${this.area().toFixed(2)}`; }
}
class Circle extends Shape {
  #radius;
  constructor(r) { super('circle'); this.#radius = r; }
  area() { return Math.PI * this.#radius ** 2; }
  static unit() { return new Circle(1); }
}
class Rect extends Shape {
  constructor(w, h) { super('rect'); this.w = w; this.h = h; }
  area() { return this.w * this.h; }
  get isSquare() { return this.w === this.h; }
}
const shapes = [Circle.unit(), new Rect(2, 3), new Rect(4, 4)];
for (const s of shapes) console.log(String(s));
console.log(shapes.map((s) => s.constructor.name), shapes[2].isSquare);
console.log(new Rect(1, 2));
const total = shapes.reduce((sum, s) => sum + s.area(), 0);
console.log(`total ${total.toFixed(3)}`);
