"""Equation-modelling datasets: the Feynman equations, generated offline from their formulas and input ranges.

The formulas and ranges are those pykan publishes in `kan/feynman.py` (facts; the generator is our own): each
input is drawn uniformly from its range, the target is the formula's value. `feynman_dataset("I.6.20a")` (or the
equation's number, 1-based in this table's order, as pykan accepts) gives 1,000 training and 1,000 test samples
by default, seeded. Two of pykan's names are kept as it spells them although the Feynman database numbers them
differently: "I.10.9" (II.10.9 there) and the second "I.18.4", named "I.18.12" here (r·F·sin θ). Rows whose
target is not finite (a formula outside its domain at a range's edge) are drawn again.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import numpy as np

from kancompress.errors import DataError

# (name, variables in input order, formula over them, input ranges: one [lo, hi] for all, or one per variable)
EQUATIONS: tuple[tuple[str, str, str, str], ...] = (
    ('I.6.20a', 'theta', 'exp(-theta**2/2)/sqrt(2*pi)', '[[-3,3]]'),
    ('I.6.20', 'theta sigma', 'exp(-theta**2/(2*sigma**2))/sqrt(2*pi*sigma**2)', '[[-1,1],[0.5,2]]'),
    ('I.6.20b', 'theta theta1 sigma', 'exp(-(theta-theta1)**2/(2*sigma**2))/sqrt(2*pi*sigma**2)', '[[-1.5,1.5],[-1.5,1.5],[0.5,2]]'),
    ('I.8.4', 'x1 x2 y1 y2', 'sqrt((x2-x1)**2+(y2-y1)**2)', '[[-1,1],[-1,1],[-1,1],[-1,1]]'),
    ('I.9.18', 'G m1 m2 x1 x2 y1 y2 z1 z2', 'G*m1*m2/((x2-x1)**2+(y2-y1)**2+(z2-z1)**2)', '[[-1,1],[-1,1],[-1,1],[-1,-0.5],[0.5,1],[-1,-0.5],[0.5,1],[-1,-0.5],[0.5,1]]'),
    ('I.10.7', 'm0 v c', 'm0/sqrt(1-v**2/c**2)', '[[0,1],[0,1],[1,2]]'),
    ('I.11.19', 'x1 y1 x2 y2 x3 y3', 'x1*y1 + x2*y2 + x3*y3', '[-1,1]'),
    ('I.12.1', 'mu Nn', 'mu * Nn', '[-1,1]'),
    ('I.12.2', 'q1 q2 eps r', 'q1*q2/(4*pi*eps*r**2)', '[[-1,1],[-1,1],[0.5,2],[0.5,2]]'),
    ('I.12.4', 'q1 eps r', 'q1/(4*pi*eps*r**2)', '[[-1,1],[0.5,2],[0.5,2]]'),
    ('I.12.5', 'q2 Ef', 'q2*Ef', '[-1,1]'),
    ('I.12.11', 'q Ef B v theta', 'q*(Ef + B*v*sin(theta))', '[[-1,1],[-1,1],[-1,1],[-1,1],[0,2*pi]]'),
    ('I.13.4', 'm u v w', '1/2*m*(v**2+u**2+w**2)', '[[-1,1],[-1,1],[-1,1],[-1,1]]'),
    ('I.13.12', 'G m1 m2 r1 r2', 'G*m1*m2*(1/r2-1/r1)', '[[0,1],[0,1],[0,1],[0.5,2],[0.5,2]]'),
    ('I.14.3', 'm g z', 'm*g*z', '[[0,1],[0,1],[-1,1]]'),
    ('I.14.4', 'ks x', '1/2*ks*x**2', '[[0,1],[-1,1]]'),
    ('I.15.3x', 'x u t c', '(x-u*t)/sqrt(1-u**2/c**2)', '[[-1,1],[-1,1],[-1,1],[1,2]]'),
    ('I.15.3t', 't u x c', '(t-u*x/c**2)/sqrt(1-u**2/c**2)', '[[-1,1],[-1,1],[-1,1],[1,2]]'),
    ('I.15.10', 'm0 v c', 'm0*v/sqrt(1-v**2/c**2)', '[[-1,1],[-0.9,0.9],[1.1,2]]'),
    ('I.16.6', 'u v c', '(u+v)/(1+u*v/c**2)', '[[-0.8,0.8],[-0.8,0.8],[1,2]]'),
    ('I.18.4', 'm1 r1 m2 r2', '(m1*r1+m2*r2)/(m1+m2)', '[[0.5,1],[-1,1],[0.5,1],[-1,1]]'),
    ('I.18.12', 'r F theta', 'r*F*sin(theta)', '[[-1,1],[-1,1],[0,2*pi]]'),
    ('I.18.16', 'm r v theta', 'm*r*v*sin(theta)', '[[-1,1],[-1,1],[-1,1],[0,2*pi]]'),
    ('I.24.6', 'm omega omega0 x', '1/4*m*(omega**2+omega0**2)*x**2', '[[0,1],[-1,1],[-1,1],[-1,1]]'),
    ('I.25.13', 'q C', 'q/C', '[[-1,1],[0.5,2]]'),
    ('I.26.2', 'n theta2', 'asin(n*sin(theta2))', '[[0,0.99],[0,2*pi]]'),
    ('I.27.6', 'd1 d2 n', '1/(1/d1+n/d2)', '[[0.5,2],[1,2],[0.5,2]]'),
    ('I.29.4', 'omega c', 'omega/c', '[[0,1],[0.5,2]]'),
    ('I.29.16', 'x1 x2 theta1 theta2', 'sqrt(x1**2+x2**2-2*x1*x2*cos(theta1-theta2))', '[[-1,1],[-1,1],[0,2*pi],[0,2*pi]]'),
    ('I.30.3', 'I0 n theta', 'I0 * sin(n*theta/2)**2 / sin(theta/2) ** 2', '[[0,1],[0,4],[0.4*pi,1.6*pi]]'),
    ('I.30.5', 'lamb n d', 'asin(lamb/(n*d))', '[[-1,1],[1,1.5],[1,1.5]]'),
    ('I.32.5', 'q a eps c', 'q**2*a**2/(eps*c**3)', '[[-1,1],[-1,1],[0.5,2],[0.5,2]]'),
    ('I.32.17', 'eps c Ef r omega omega0', '(1/2*eps*c*Ef**2)*(8*pi*r**2/3)*(omega**4/(omega**2-omega0**2)**2)', '[[0,1],[0,1],[-1,1],[0,1],[0,1],[1,2]]'),
    ('I.34.8', 'q V B p', 'q*V*B/p', '[[-1,1],[-1,1],[-1,1],[0.5,2]]'),
    ('I.34.10', 'omega0 v c', 'omega0/(1-v/c)', '[[0,1],[0,0.9],[1.1,2]]'),
    ('I.34.14', 'omega0 v c', 'omega0 * (1+v/c)/sqrt(1-v**2/c**2)', '[[0,1],[-0.9,0.9],[1.1,2]]'),
    ('I.34.27', 'hbar omega', 'hbar * omega', '[[-1,1],[-1,1]]'),
    ('I.37.4', 'I1 I2 delta', 'I1 + I2 + 2*sqrt(I1*I2)*cos(delta)', '[[0.1,1],[0.1,1],[0,2*pi]]'),
    ('I.38.12', 'eps hbar m q', '4*pi*eps*hbar**2/(m*q**2)', '[[0,1],[0,1],[0.5,2],[0.5,2]]'),
    ('I.39.10', 'pF V', '3/2 * pF * V', '[[0,1],[0,1]]'),
    ('I.39.11', 'gamma pF V', 'pF * V/(gamma - 1)', '[[1.5,3],[0,1],[0,1]]'),
    ('I.39.22', 'n kb T V', 'n*kb*T/V', '[[0,1],[0,1],[0,1],[0.5,2]]'),
    ('I.40.1', 'n0 m g x kb T', 'n0 * exp(-m*g*x/(kb*T))', '[[0,1],[-1,1],[-1,1],[-1,1],[1,2],[1,2]]'),
    ('I.41.16', 'hbar omega c kb T', 'hbar * omega**3/(pi**2*c**2*(exp(hbar*omega/(kb*T))-1))', '[[0.5,1],[0.5,1],[0.5,2],[0.5,2],[0.5,2]]'),
    ('I.43.16', 'mu q Ve d', 'mu*q*Ve/d', '[[0,1],[0,1],[0,1],[0.5,2]]'),
    ('I.43.31', 'mu kb T', 'mu*kb*T', '[[0,1],[0,1],[0,1]]'),
    ('I.43.43', 'gamma kb v A', 'kb*v/A/(gamma-1)', '[[1.5,3],[0,1],[0,1],[0.5,2]]'),
    ('I.44.4', 'n kb T V1 V2', 'n*kb*T*log(V2/V1)', '[[0,1],[0,1],[0,1],[0.5,2],[0.5,2]]'),
    ('I.47.23', 'gamma p rho', 'sqrt(gamma*p/rho)', '[[0.1,1],[0.1,1],[0.5,2]]'),
    ('I.48.20', 'm v c', 'm*c**2/sqrt(1-v**2/c**2)', '[[0,1],[-0.9,0.9],[1.1,2]]'),
    ('I.50.26', 'x1 alpha omega t', 'x1*(cos(omega*t)+alpha*cos(omega*t)**2)', '[[0,1],[0,1],[0,2*pi],[0,1]]'),
    ('II.2.42', 'kappa T1 T2 A d', 'kappa*(T2-T1)*A/d', '[[0,1],[0,1],[0,1],[0,1],[0.5,2]]'),
    ('II.3.24', 'P r', 'P/(4*pi*r**2)', '[[0,1],[0.5,2]]'),
    ('II.4.23', 'q eps r', 'q/(4*pi*eps*r)', '[[0,1],[0.5,2],[0.5,2]]'),
    ('II.6.11', 'eps pd theta r', '1/(4*pi*eps)*pd*cos(theta)/r**2', '[[0.5,2],[0,1],[0,2*pi],[0.5,2]]'),
    ('II.6.15a', 'eps pd z x y r', '3/(4*pi*eps)*pd*z/r**5*sqrt(x**2+y**2)', '[[0.5,2],[0,1],[0,1],[0,1],[0,1],[0.5,2]]'),
    ('II.6.15b', 'eps pd r theta', '3/(4*pi*eps)*pd/r**3*cos(theta)*sin(theta)', '[[0.5,2],[0,1],[0.5,2],[0,2*pi]]'),
    ('II.8.7', 'q eps d', '3/5*q**2/(4*pi*eps*d)', '[[0,1],[0.5,2],[0.5,2]]'),
    ('II.8.31', 'eps Ef', '1/2*eps*Ef**2', '[[0,1],[0,1]]'),
    ('I.10.9', 'sigma eps chi', 'sigma/eps/(1+chi)', '[[0,1],[0.5,2],[0,1]]'),
    ('II.11.3', 'q Ef m omega0 omega', 'q*Ef/(m*(omega0**2-omega**2))', '[[0,1],[0,1],[0.5,2],[1.5,3],[0,1]]'),
    ('II.11.17', 'n0 pd Ef theta kb T', 'n0*(1+pd*Ef*cos(theta)/(kb*T))', '[[0,1],[-1,1],[-1,1],[0,2*pi],[0.5,2],[0.5,2]]'),
    ('II.11.20', 'n pd Ef kb T', 'n*pd**2*Ef/(3*kb*T)', '[[0,1],[0,1],[0,1],[0.5,2],[0.5,2]]'),
    ('II.11.27', 'n alpha eps Ef', 'n*alpha/(1-n*alpha/3)*eps*Ef', '[[0,1],[0,2],[0,1],[0,1]]'),
    ('II.11.28', 'n alpha', '1 + n*alpha/(1-n*alpha/3)', '[[0,1],[0,2]]'),
    ('II.13.17', 'eps c l r', '1/(4*pi*eps*c**2)*(2*l/r)', '[[0.5,2],[0.5,2],[0,1],[0.5,2]]'),
    ('II.13.23', 'rho v c', 'rho/sqrt(1-v**2/c**2)', '[[0,1],[0,1],[1,2]]'),
    ('II.13.34', 'rho v c', 'rho*v/sqrt(1-v**2/c**2)', '[[0,1],[0,1],[1,2]]'),
    ('II.15.4', 'muM B theta', '- muM * B * cos(theta)', '[[0,1],[0,1],[0,2*pi]]'),
    ('II.15.5', 'pd Ef theta', '- pd * Ef * cos(theta)', '[[0,1],[0,1],[0,2*pi]]'),
    ('II.21.32', 'q eps r v c', 'q/(4*pi*eps*r*(1-v/c))', '[[0,1],[0.5,2],[0.5,2],[0,1],[1,2]]'),
    ('II.24.17', 'omega c d', 'sqrt(omega**2/c**2-pi**2/d**2)', '[[1,1.5],[0.75,1],[1*pi,1.5*pi]]'),
    ('II.27.16', 'eps c Ef', 'eps * c * Ef**2', '[[0,1],[0,1],[-1,1]]'),
    ('II.27.18', 'eps Ef', 'eps * Ef**2', '[[0,1],[-1,1]]'),
    ('II.34.2a', 'q v r', 'q*v/(2*pi*r)', '[[0,1],[0,1],[0.5,2]]'),
    ('II.34.2', 'q v r', 'q*v*r/2', '[[0,1],[0,1],[0,1]]'),
    ('II.34.11', 'g q B m', 'g*q*B/(2*m)', '[[0,1],[0,1],[0,1],[0.5,2]]'),
    ('II.34.29a', 'q h m', 'q*h/(4*pi*m)', '[[0,1],[0,1],[0.5,2]]'),
    ('II.34.29b', 'g mu B J hbar', 'g*mu*B*J/hbar', '[[0,1],[0,1],[0,1],[0,1],[0.5,2]]'),
    ('II.35.18', 'n0 mu B kb T', 'n0/(exp(mu*B/(kb*T))+exp(-mu*B/(kb*T)))', '[[0,1],[0,1],[0,1],[0.5,2],[0.5,2]]'),
    ('II.35.21', 'n mu B kb T', 'n*mu*tanh(mu*B/(kb*T))', '[[0,1],[0,1],[0,1],[0.5,2],[0.5,2]]'),
    ('II.36.38', 'mu B kb T alpha M eps c', 'mu*B/(kb*T) + mu*alpha*M/(eps*c**2*kb*T)', '[[0,1],[0,1],[0.5,2],[0.5,2],[0,1],[0,1],[0.5,2],[0.5,2]]'),
    ('II.37.1', 'mu chi B', 'mu*(1+chi)*B', '[[0,1],[0,1],[0,1]]'),
    ('II.38.3', 'Y A x d', 'Y*A*x/d', '[[0,1],[0,1],[0,1],[0.5,2]]'),
    ('II.38.14', 'Y sigma', 'Y/(2*(1+sigma))', '[[0,1],[0,1]]'),
    ('III.4.32', 'hbar omega kb T', '1/(exp(hbar*omega/(kb*T))-1)', '[[0.5,1],[0.5,1],[0.5,2],[0.5,2]]'),
    ('III.4.33', 'hbar omega kb T', 'hbar*omega/(exp(hbar*omega/(kb*T))-1)', '[[0,1],[0,1],[0.5,2],[0.5,2]]'),
    ('III.7.38', 'mu B hbar', '2*mu*B/hbar', '[[0,1],[0,1],[0.5,2]]'),
    ('III.8.54', 'E t hbar', 'sin(E*t/hbar)**2', '[[0,2*pi],[0,1],[0.5,2]]'),
    ('III.9.52', 'pd Ef t hbar omega omega0', 'pd*Ef*t/hbar*sin((omega-omega0)*t/2)**2/((omega-omega0)*t/2)**2', '[[0,1],[0,1],[0,1],[0.5,2],[0,pi],[0,pi]]'),
    ('III.10.19', 'mu Bx By Bz', 'mu*sqrt(Bx**2+By**2+Bz**2)', '[[0,1],[0,1],[0,1],[0,1]]'),
    ('III.12.43', 'n hbar', 'n * hbar', '[[0,1],[0,1]]'),
    ('III.13.18', 'E d k hbar', '2*E*d**2*k/hbar', '[[0,1],[0,1],[0,1],[0.5,2]]'),
    ('III.14.14', 'I0 q Ve kb T', 'I0 * (exp(q*Ve/(kb*T))-1)', '[[0,1],[0,1],[0,1],[0.5,2],[0.5,2]]'),
    ('III.15.12', 'U k d', '2*U*(1-cos(k*d))', '[[0,1],[0,2*pi],[0,1]]'),
    ('III.15.14', 'hbar E d', 'hbar**2/(2*E*d**2)', '[[0,1],[0.5,2],[0.5,2]]'),
    ('III.15.27', 'alpha n d', '2*pi*alpha/(n*d)', '[[0,1],[0.5,2],[0.5,2]]'),
    ('III.17.37', 'beta alpha theta', 'beta * (1+alpha*cos(theta))', '[[0,1],[0,1],[0,2*pi]]'),
    ('III.19.51', 'm q eps hbar n', '- m * q**4/(2*(4*pi*eps)**2*hbar**2)*1/n**2', '[[0,1],[0,1],[0.5,2],[0.5,2],[0.5,2]]'),
    ('III.21.20', 'rho q A m', '- rho*q*A/m', '[[0,1],[0,1],[0,1],[0.5,2]]'),
    ('Rutherforld scattering', 'Z1 Z2 alpha hbar c E theta', '(Z1*Z2*alpha*hbar*c/(4*E*sin(theta/2)**2))**2', '[[0,1],[0,1],[0,1],[0,1],[0,1],[0.5,2],[0.1*pi,0.9*pi]]'),
    ('Friedman equation', 'G rho kf c af', 'sqrt(8*pi*G/3*rho-kf*c**2/af**2)', '[[1,2],[1,2],[0,1],[0,1],[1,2]]'),
    ('Compton scattering', 'E m c theta', 'E/(1+E/(m*c**2)*(1-cos(theta)))', '[[0,1],[0.5,2],[0.5,2],[0,2*pi]]'),
    ('Radiated gravitational wave power', 'G c m1 m2 r', '-32/5*G**4/c**5*(m1*m2)**2*(m1+m2)/r**5', '[[0,1],[0.5,2],[0,1],[0,1],[0.5,2]]'),
    ('Relativistic aberration', 'theta2 v c', 'acos((cos(theta2)-v/c)/(1-v/c*cos(theta2)))', '[[0,pi],[0,1],[1,2]]'),
    ('N-slit diffraction', 'I0 alpha delta N', 'I0 * (sin(alpha/2)/(alpha/2)*sin(N*delta/2)/sin(delta/2))**2', '[[0,1],[0.1*pi,0.9*pi],[0.1*pi,0.9*pi],[0.5,1]]'),
    ('Goldstein 3.16', 'm E U L r', 'sqrt(2/m*(E-U-L**2/(2*m*r**2)))', '[[1,2],[2,3],[0,1],[0,1],[1,2]]'),
    ('Goldstein 3.55', 'm kG L E theta1 theta2', 'm*kG/L**2*(1+sqrt(1+2*E*L**2/(m*kG**2))*cos(theta1-theta2))', '[[0.5,2],[0.5,2],[0.5,2],[0,1],[0,2*pi],[0,2*pi]]'),
    ('Goldstein 3.64 (ellipse)', 'd alpha theta1 theta2', 'd*(1-alpha**2)/(1+alpha*cos(theta2-theta1))', '[[0,1],[0,0.9],[0,2*pi],[0,2*pi]]'),
    ('Goldstein 3.74 (Kepler)', 'd G m1 m2', '2*pi*d**(3/2)/sqrt(G*(m1+m2))', '[[0,1],[0.5,2],[0.5,2],[0.5,2]]'),
    ('Goldstein 3.99', 'eps E L m Z1 Z2 q', 'sqrt(1+2*eps**2*E*L**2/(m*(Z1*Z2*q**2)**2))', '[[0,1],[0,1],[0,1],[0.5,2],[0.5,2],[0.5,2],[0.5,2]]'),
    ('Goldstein 8.56', 'p q A c m Ve', 'sqrt((p-q*A)**2*c**2+m**2*c**4) + q*Ve', '[0,1]'),
    ('Goldstein 12.80', 'm p omega x alpha y', '1/(2*m)*(p**2+m**2*omega**2*x**2*(1+alpha*y/x))', '[[0.5,2],[0,1],[0,1],[0,1],[0,1],[0.5,2]]'),
    ('Jackson 2.11', 'q eps y Ve d', 'q/(4*pi*eps*y**2)*(4*pi*eps*Ve*d-q*d*y**3/(y**2-d**2)**2)', '[[0,1],[0.5,2],[1,2],[0,1],[0,1]]'),
    ('Jackson 3.45', 'q r d alpha', 'q/sqrt(r**2+d**2-2*d*r*cos(alpha))', '[[0,1],[0,1],[0,1],[0,2*pi]]'),
    ('Jackson 4.60', 'Ef theta alpha d r', 'Ef * cos(theta) * ((alpha-1)/(alpha+2) * d**3/r**2 - r)', '[[0,1],[0,2*pi],[0,2],[0,1],[0.5,2]]'),
    ('Jackson 11.38 (Doppler)', 'omega v c theta', 'sqrt(1-v**2/c**2)/(1+v/c*cos(theta))*omega', '[[0,1],[0,1],[1,2],[0,2*pi]]'),
    ('Weinberg 15.2.1', 'G c kf af H', '3/(8*pi*G)*(c**2*kf/af**2+H**2)', '[[0.5,2],[0,1],[0,1],[0.5,2],[0,1]]'),
    ('Weinberg 15.2.2', 'G c kf af H alpha', '-1/(8*pi*G)*(c**4*kf/af**2+c**2*H**2*(1-2*alpha))', '[[0.5,2],[0,1],[0,1],[0.5,2],[0,1],[0,1]]'),
    ('Schwarz 13.132 (Klein-Nishina)', 'alpha hbar m c omega0 omega theta', 'pi*alpha**2*hbar**2/m**2/c**2*(omega0/omega)**2*(omega0/omega+omega/omega0-sin(theta)**2)', '[[0,1],[0,1],[0.5,2],[0.5,2],[0.5,2],[0.5,2],[0,2*pi]]'),
)

_FUNCTIONS = {"exp": np.exp, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin,
              "acos": np.arccos, "atan": np.arctan, "tanh": np.tanh, "log": np.log, "pi": math.pi}
_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Load, ast.Constant, ast.Add,
                  ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd, ast.List)


@dataclass(frozen=True)
class Equation:
    name: str
    variables: tuple[str, ...]
    formula: str
    ranges: tuple[tuple[float, float], ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The formula at inputs x: (N, variables) -> (N,)."""
        values = {name: x[:, i] for i, name in enumerate(self.variables)}
        with np.errstate(all="ignore"):
            result = _evaluate(self.formula, {**_FUNCTIONS, **values})
        return np.broadcast_to(np.asarray(result, dtype=np.float64), (x.shape[0],))


def _evaluate(text: str, names: dict[str, object]) -> object:
    """Evaluate one of this module's own formulas: arithmetic, the functions above and the variables only."""
    tree = ast.parse(text, mode="eval")
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES) or (isinstance(node, ast.Name) and node.id not in names):
            raise ValueError(f"formula {text!r} uses {ast.dump(node)[:40]}")
    return eval(compile(tree, "<formula>", "eval"), {"__builtins__": {}}, names)  # noqa: S307 (checked above)


def equation(name: str) -> Equation:
    """The equation called `name` (or numbered `name`, 1-based)."""
    entry = next((e for e in EQUATIONS if e[0] == name), None)
    if entry is None and name.isdigit() and 1 <= int(name) <= len(EQUATIONS):
        entry = EQUATIONS[int(name) - 1]
    if entry is None:
        raise DataError(f"unknown Feynman equation {name!r}; e.g. feynman:I.6.20a, feynman:I.8.4 (all: "
                        "`python -m kancompress.feynman`)")
    title, variables, formula, ranges_text = entry
    names = tuple(variables.split())
    ranges = _evaluate(ranges_text, {"pi": math.pi})
    assert isinstance(ranges, list)
    if not isinstance(ranges[0], list):
        ranges = [ranges] * len(names)
    return Equation(title, names, formula, tuple((float(lo), float(hi)) for lo, hi in ranges))


def feynman_dataset(name: str, n_train: int = 1000, n_test: int = 1000, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, test_x, test_y) of equation `name`: inputs uniform in their ranges, float32, targets
    (N, 1)."""
    eq = equation(name)
    rng = np.random.default_rng(seed)
    low = np.array([lo for lo, _ in eq.ranges])
    high = np.array([hi for _, hi in eq.ranges])
    need = n_train + n_test
    rows, targets = [], []
    for _ in range(100):
        x = rng.uniform(low, high, size=(2 * need, len(eq.variables)))
        y = eq(x)
        keep = np.isfinite(y)
        rows.append(x[keep])
        targets.append(y[keep])
        if sum(len(t) for t in targets) >= need:
            break
    x_all = np.concatenate(rows)[:need].astype(np.float32)
    y_all = np.concatenate(targets)[:need].astype(np.float32)[:, None]
    if len(y_all) < need:
        raise DataError(f"Feynman equation {name}: too few finite values in its input ranges")
    return x_all[:n_train], y_all[:n_train], x_all[n_train:], y_all[n_train:]


if __name__ == "__main__":  # the list of equations
    for number, (title, variables, formula, _) in enumerate(EQUATIONS, start=1):
        print(f"{number:>3}  {title:<36} f({', '.join(variables.split())}) = {formula}")
