"""Per-layer relative rms error of Winograd F(m x m, 3 x 3) convolutions with bf16-rounded
transformed input V and weights U (products and sums exact), against the exact direct
convolution: a NumPy model of the rounding of the bf16 Winograd form, used to choose the tile
(docs/performance.md). One 64 -> 64 channel layer on a 12 x 12 SiLU'd Gaussian input with a zero
border, weights scaled by 1/sqrt(9 cin); the transforms by Toom-Cook from the listed points
plus infinity (3 points: F(2x2), the runtime's; 4: F(3x3); 5: F(4x4)). "direct bf16" rounds
the input and the weights of the direct form. Command: python3 benches/winograd_bf16_error.py
"""
import numpy as np
rng=np.random.default_rng(0)
def bf16(x):
    x=np.asarray(x,np.float32); b=x.view(np.uint32).astype(np.uint64)
    r=((b+0x7fff+((b>>16)&1))>>16)<<16
    return r.astype(np.uint32).view(np.float32).astype(np.float64)
def mats(pts):
    # Cook-Toom: F(m,3) with points pts (len m+1) plus infinity
    m=len(pts)-1; n=m+2
    # A^T: m x n ; G: n x 3 ; B^T: n x n  (use Lavin standard via polynomial construction)
    import itertools
    a=np.array(pts,float)
    # Vandermonde-based construction (Toom-Cook), n = m + 3 - 1 points incl inf
    # Output transform A^T[i][j] = a_j^i for finite, A^T[m-1][inf]=1
    AT=np.zeros((m,n)); 
    for j,p in enumerate(a): AT[:,j]=p**np.arange(m)
    AT[m-1,n-1]=1
    G=np.zeros((n,3))
    for j,p in enumerate(a):
        f=np.prod([p-q for k,q in enumerate(a) if k!=j])
        G[j]=p**np.arange(3)/f
    G[n-1]=[0,0,1]
    # B^T from modified Toom-Cook: compute via solving: we need y = A^T[(G g) * (B^T d)] correlation
    # Solve B^T numerically: for correlation y_i = sum_k g_k d_{i+k}
    # find BT s.t. identity holds for all g,d: linear in BT; solve by least squares
    nvar=n*n
    rows=[];rhs=[]
    for gi in range(3):
        for di in range(n):
            g=np.zeros(3);g[gi]=1;d=np.zeros(n);d[di]=1
            Gg=G@g
            # y_i = sum_j AT[i,j]*Gg[j]*sum_l BT[j,l] d_l
            for i in range(m):
                row=np.zeros(nvar)
                for j in range(n): row[j*n+di]+=AT[i,j]*Gg[j]
                rows.append(row); rhs.append(1.0 if di==i+gi else 0.0)
    sol,res,rk,_=np.linalg.lstsq(np.array(rows),np.array(rhs),rcond=None)
    BT=sol.reshape(n,n)
    return AT,G,BT
def wino(x,w,AT,G,BT,rnd):
    # x [cin,H,W] padded already with H-2 divisible by m ; w [cout,cin,3,3]
    m,n=AT.shape
    cin,H,W=x.shape; cout=w.shape[0]
    U=np.einsum('ij,ocjk,lk->ocil',G,w,G)  # n x n
    U=rnd(U)
    th=(H-2)//m; tw=(W-2)//m
    out=np.zeros((cout,th*m,tw*m))
    for ty in range(th):
        for tx in range(tw):
            d=x[:,ty*m:ty*m+n,tx*m:tx*m+n]
            V=rnd(np.einsum('ij,cjk,lk->cil',BT,d,BT))
            M=np.einsum('ocil,cil->oil',U,V)
            out[:,ty*m:(ty+1)*m,tx*m:(tx+1)*m]=np.einsum('ij,ojk,lk->oil',AT,M,AT)
    return out
def direct(x,w):
    cin,H,W=x.shape;out=np.zeros((w.shape[0],H-2,W-2))
    for ky in range(3):
        for kx in range(3):
            out+=np.einsum('oc,chw->ohw',w[:,:,ky,kx],x[:,ky:ky+H-2,kx:kx+W-2])
    return out
cin=cout=64;S=12
z=rng.standard_normal((cin,S+2,S+2)); x=z/(1+np.exp(-z)); x[:,0,:]=0;x[:,-1,:]=0;x[:,:,0]=0;x[:,:,-1]=0
w=rng.standard_normal((cout,cin,3,3))/np.sqrt(9*cin)
ref=direct(x,w)
e=lambda o: np.sqrt(np.mean((o-ref)**2)/np.mean(ref**2))
print("direct bf16", e(direct(bf16(x),bf16(w))))
for pts in ([0,1,-1],[0,1,-1,2],[0,1,-1,0.5],[0,1,-1,2,-2],[0,1,-1,0.5,-0.5],[0,1,-1,2,-0.5]):
    AT,G,BT=mats(pts)
    ex=wino(x,w,AT,G,BT,lambda a:a)
    print(pts, "exact", e(ex), "bf16", e(wino(x,w,AT,G,BT,bf16)))
