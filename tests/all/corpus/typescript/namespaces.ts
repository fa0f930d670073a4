namespace Geometry {
  export const ORIGIN = { x: 0, y: 0 };
  export function distance(a: { x: number; y: number }, b = ORIGIN): number {
    return Math.hypot(a.x - b.x, a.y - b.y);
  }
}
console.log(Geometry.distance({ x: 3, y: 4 }), Geometry.ORIGIN);
